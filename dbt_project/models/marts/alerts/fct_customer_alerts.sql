-- Customer-change alerts (客户异动) raised on the as-of date: buying that drops against the
-- customer's own baseline, no order past their usual gap, a complaint spike, a complaint
-- left unresolved past its SLA; each with severity, a reason in words and a suggested owner.
-- Incremental: each daily run appends that day's alerts, so the table is the alert history.
-- The history follows people as identity changes: alerts raised for an id since merged into
-- another move to the survivor, and alerts of a customer no longer in dim_customers (erased)
-- go, so every row names a current customer.

-- depends_on: {{ ref('dim_customers') }}
-- depends_on: {{ ref('dim_customer_id_map') }}

-- full_refresh=false: the past days' alerts are history no source holds any more (each day's
-- alerts read that day's baselines), so `--full-refresh` keeps this table and adds the day.

-- on_schema_change: the enforced contract fixes the columns and their types; 'fail' would
-- also compare the new rows' own types, which on PostgreSQL differ (text, not the contract's
-- varchar) though the values fit.

{{
    config(
        materialized='incremental',
        full_refresh=false,
        unique_key=['alert_date', 'customer_id', 'alert_kind'],
        incremental_strategy=history_incremental_strategy(),
        on_schema_change='append_new_columns',
        pre_hook=["{{ copy_earlier_rows() }}"],
        post_hook=[
            "{{ delete_rows_missing_from('customer_id', ref('dim_customers')) }}",
            "{{ drop_earlier_rows() }}",
        ],
    )
}}

with

as_of as (

    {{ as_of_date_cte() }}

),

segments as (

    select * from {{ ref('customer_segments') }}

),

customer_orders as (

    select * from {{ ref('int_sales__customer_orders') }}

),

tickets as (

    select * from {{ ref('stg_callcentre__tickets') }}

),

record_customers as (

    select * from {{ ref('int_identity__record_customers') }}

),

labels as (

    select * from {{ ref('segment_labels') }}

),

membership_changes as (

    select * from {{ ref('int_sales__membership_changes') }}

),

{% if is_incremental() %}

id_map as (

    select * from {{ ref('dim_customer_id_map') }}

),

raised_earlier as (

    select * from {{ earlier_rows() }}

),

{% endif %}

{%- set recent = var('alert_recent_days') %}
{%- set baseline = var('alert_baseline_days') %}

buying_windows as (

    select
        customer_orders.customer_id,
        sum(case
            when customer_orders.ordered_on > {{ dbt.dateadd('day', -recent, 'as_of.as_of_date') }}
            then 1 else 0 end) as recent_orders,
        sum(case
            when customer_orders.ordered_on > {{ dbt.dateadd('day', -recent, 'as_of.as_of_date') }}
            then customer_orders.order_amount else 0 end) as recent_spend,
        sum(case
            when customer_orders.ordered_on <= {{ dbt.dateadd('day', -recent, 'as_of.as_of_date') }}
            then 1 else 0 end) as baseline_orders,
        sum(case
            when customer_orders.ordered_on <= {{ dbt.dateadd('day', -recent, 'as_of.as_of_date') }}
            then customer_orders.order_amount else 0 end) as baseline_spend
    from customer_orders
    cross join as_of
    where not customer_orders.is_reversed
        and customer_orders.ordered_on <= as_of.as_of_date
        and customer_orders.ordered_on > {{ dbt.dateadd('day', -(recent + baseline), 'as_of.as_of_date') }}
    group by customer_orders.customer_id

),

buying as (

    select
        buying_windows.*,
        buying_windows.baseline_orders * {{ recent }} * 1.0 / {{ baseline }} as expected_recent_orders,
        {{ poisson_cdf(
            'buying_windows.recent_orders',
            'buying_windows.baseline_orders * ' ~ recent ~ ' * 1.0 / ' ~ baseline
        ) }} as chance_of_so_few
    from buying_windows

),

gaps as (

    select
        customer_orders.customer_id,
        count(*) as lifetime_orders,
        {{ dbt.datediff('min(customer_orders.ordered_on)', 'max(customer_orders.ordered_on)', 'day') }}
            as ordering_span_days,
        max(customer_orders.ordered_on) as last_order_on
    from customer_orders
    cross join as_of
    where not customer_orders.is_reversed
        and customer_orders.ordered_on <= as_of.as_of_date
    group by customer_orders.customer_id

),

customer_tickets as (

    select
        record_customers.customer_id,
        tickets.ticket_id,
        tickets.is_complaint,
        tickets.opened_at,
        tickets.resolved_at
    from tickets
    inner join record_customers
        on record_customers.source = 'tickets'
        and record_customers.source_key = tickets.ticket_id

),

complaints as (

    {%- set spike = var('alert_complaint_spike_days') %}
    select
        customer_tickets.customer_id,
        sum(case
            when cast(customer_tickets.opened_at as date) > {{ dbt.dateadd('day', -spike, 'as_of.as_of_date') }}
            then 1 else 0 end) as recent_complaints,
        sum(case
            when cast(customer_tickets.opened_at as date) <= {{ dbt.dateadd('day', -spike, 'as_of.as_of_date') }}
                and cast(customer_tickets.opened_at as date) > {{ dbt.dateadd('day', -2 * spike, 'as_of.as_of_date') }}
            then 1 else 0 end) as earlier_complaints,
        sum(case
            when customer_tickets.resolved_at is null
                and customer_tickets.opened_at < {{ dbt.dateadd('hour', -var('alert_complaint_sla_hours'), dbt.dateadd('day', 1, 'as_of.as_of_date')) }}
            then 1 else 0 end) as complaints_past_sla
    from customer_tickets
    cross join as_of
    where customer_tickets.is_complaint
        and cast(customer_tickets.opened_at as date) <= as_of.as_of_date
    group by customer_tickets.customer_id

),

-- One downgrade alert per customer: the latest in the window, though a customer may hold
-- two memberships (merged by identity) or go down twice.
latest_downgrades as (

    select
        membership_changes.customer_id,
        membership_changes.previous_level,
        membership_changes.membership_level,
        membership_changes.changed_on,
        row_number() over (
            partition by membership_changes.customer_id
            order by membership_changes.changed_on desc, membership_changes.sales_customer_id
        ) as recency_rank
    from membership_changes
    cross join as_of
    where membership_changes.is_downgrade
        and membership_changes.changed_on > {{ dbt.dateadd('day', -recent, 'as_of.as_of_date') }}
        and membership_changes.changed_on <= as_of.as_of_date

),

raised as (

    select
        buying.customer_id,
        'frequency_drop' as alert_kind,
        cast(buying.recent_orders as {{ text_type() }}) || ' orders in the last {{ recent }} days against '
            || cast({{ rounded_quotient('buying.baseline_orders * ' ~ recent, baseline, 10, 1) }} as {{ text_type() }})
            || ' usually (chance '
            || cast(cast(buying.chance_of_so_few as decimal(6, 4)) as {{ text_type() }}) || ')' as reason
    from buying
    where buying.baseline_orders >= {{ var('alert_min_baseline_orders') }}
        and buying.chance_of_so_few < {{ var('alert_drop_significance') }}

    union all

    -- Still buying, but far less per order than their own baseline.
    select
        buying.customer_id,
        'spend_drop' as alert_kind,
        'average order in the last {{ recent }} days fell to '
            || cast({{ rounded_quotient('buying.recent_spend', 'buying.recent_orders', 18, 2) }} as {{ text_type() }})
            || ' from ' || cast({{ rounded_quotient('buying.baseline_spend', 'buying.baseline_orders', 18, 2) }} as {{ text_type() }})
            as reason
    from buying
    where buying.baseline_orders >= {{ var('alert_min_baseline_orders') }}
        and buying.recent_orders > 0
        and buying.recent_spend / buying.recent_orders
            < {{ var('alert_drop_ratio') }} * buying.baseline_spend / buying.baseline_orders

    union all

    select
        gaps.customer_id,
        'inactive_past_usual_gap' as alert_kind,
        'no order for ' || cast({{ dbt.datediff('gaps.last_order_on', 'as_of.as_of_date', 'day') }} as {{ text_type() }})
            || ' days; usually one every '
            || cast({{ rounded_quotient('gaps.ordering_span_days', 'gaps.lifetime_orders - 1', 10, 1) }} as {{ text_type() }})
            || ' days' as reason
    from gaps
    cross join as_of
    where gaps.lifetime_orders >= {{ var('alert_inactivity_min_orders') }}
        and gaps.ordering_span_days > 0
        -- Past the multiple of their usual gap, the span over the gaps between orders.
        and {{ dbt.datediff('gaps.last_order_on', 'as_of.as_of_date', 'day') }}
            * (gaps.lifetime_orders - 1)
            > {{ var('alert_inactivity_gap_multiple') }} * gaps.ordering_span_days

    union all

    select
        complaints.customer_id,
        'complaint_spike' as alert_kind,
        cast(complaints.recent_complaints as {{ text_type() }}) || ' complaints in the last '
            || '{{ var("alert_complaint_spike_days") }} days against '
            || cast(complaints.earlier_complaints as {{ text_type() }}) || ' before' as reason
    from complaints
    where complaints.recent_complaints >= {{ var('alert_complaint_spike_count') }}
        and complaints.recent_complaints > complaints.earlier_complaints

    union all

    select
        complaints.customer_id,
        'complaint_past_sla' as alert_kind,
        cast(complaints.complaints_past_sla as {{ text_type() }})
            || ' complaint(s) unresolved past the {{ var("alert_complaint_sla_hours") }}-hour SLA' as reason
    from complaints
    where complaints.complaints_past_sla > 0

    union all

    select
        latest_downgrades.customer_id,
        'membership_downgrade' as alert_kind,
        'membership level went down from ' || latest_downgrades.previous_level || ' to '
            || latest_downgrades.membership_level || ' on '
            || cast(latest_downgrades.changed_on as {{ text_type() }}) as reason
    from latest_downgrades
    where latest_downgrades.recency_rank = 1

),

final as (

    select
        as_of.as_of_date as alert_date,
        raised.customer_id,
        raised.alert_kind,
        kind_label.label_zh as alert_kind_zh,
        kind_label.label_en as alert_kind_en,
        case
            when segments.value_tier in ('diamond', 'gold') then 'high'
            when segments.value_tier = 'silver'
                or raised.alert_kind in ('complaint_spike', 'complaint_past_sla') then 'medium'
            else 'low'
        end as severity,
        raised.reason,
        case
            when segments.value_tier in ('diamond', 'gold') then 'account_manager'
            else 'automated_care'
        end as suggested_owner,
        segments.value_tier
    from raised
    cross join as_of
    inner join segments
        on raised.customer_id = segments.customer_id
    left join labels as kind_label
        on kind_label.label_kind = 'alert_kind' and kind_label.code = raised.alert_kind

),

{% if is_incremental() %}

-- Two merged ids can carry the same alert to one survivor: one copy is kept, and none
-- where the survivor has that alert already in this run.
moved_to_survivors as (

    select
        raised_earlier.alert_date,
        id_map.current_customer_id as customer_id,
        raised_earlier.alert_kind,
        raised_earlier.alert_kind_zh,
        raised_earlier.alert_kind_en,
        raised_earlier.severity,
        raised_earlier.reason,
        raised_earlier.suggested_owner,
        raised_earlier.value_tier,
        row_number() over (
            partition by raised_earlier.alert_date, id_map.current_customer_id, raised_earlier.alert_kind
            order by raised_earlier.customer_id
        ) as copy_number
    from raised_earlier
    inner join id_map
        on raised_earlier.customer_id = id_map.customer_id
    where id_map.current_customer_id <> raised_earlier.customer_id

),

new_rows as (

    select * from final

    union all

    select
        moved_to_survivors.alert_date,
        moved_to_survivors.customer_id,
        moved_to_survivors.alert_kind,
        moved_to_survivors.alert_kind_zh,
        moved_to_survivors.alert_kind_en,
        moved_to_survivors.severity,
        moved_to_survivors.reason,
        moved_to_survivors.suggested_owner,
        moved_to_survivors.value_tier
    from moved_to_survivors
    where moved_to_survivors.copy_number = 1
        and not exists (
            select 1
            from final as today
            where today.alert_date = moved_to_survivors.alert_date
                and today.customer_id = moved_to_survivors.customer_id
                and today.alert_kind = moved_to_survivors.alert_kind
        )

)

{% if rewrites_history() %}

,

-- The whole history is written again (Spark): the earlier rows of current customers go
-- with the new ones, but for those a new row of the same key replaces.
kept_rows as (

    select
        raised_earlier.alert_date,
        raised_earlier.customer_id,
        raised_earlier.alert_kind,
        raised_earlier.alert_kind_zh,
        raised_earlier.alert_kind_en,
        raised_earlier.severity,
        raised_earlier.reason,
        raised_earlier.suggested_owner,
        raised_earlier.value_tier
    from raised_earlier
    where raised_earlier.customer_id in (select customer_id from {{ ref('dim_customers') }})
        and not exists (
            select 1
            from new_rows
            where new_rows.alert_date = raised_earlier.alert_date
                and new_rows.customer_id = raised_earlier.customer_id
                and new_rows.alert_kind = raised_earlier.alert_kind
        )

),

written_rows as (

    select * from new_rows
    union all
    select * from kept_rows

)

select * from written_rows

{% else %}

select * from new_rows

{% endif %}

{% else %}

new_rows as (

    select * from final

)

select * from new_rows

{% endif %}
