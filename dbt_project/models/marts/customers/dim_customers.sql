-- The golden record: one row per current customer_id. Each field is the non-empty value
-- from the most trusted source (seed identity_source_priority), the most recent within it,
-- and says which source it came from.
--
-- Incremental: a normal run rebuilds only the customers whose inputs changed since the last
-- build (a record gained or lost, a record linked again, a source row loaded again), which
-- at 1M customers is a few percent of them; the post-hook drops ids that no longer hold a
-- record (merged away, erased). A change to the seed or to this model's rules reaches the
-- customers already built on a `--full-refresh` run, as with every incremental model.
--
-- on_schema_change: as fct_customer_alerts, the enforced contract fixes the columns.

{{
    config(
        materialized=incremental_materialization(),
        unique_key='customer_id',
        incremental_strategy='delete+insert',
        on_schema_change='append_new_columns',
        post_hook=[
            "{{ delete_rows_missing_from('customer_id', ref('int_identity__record_customers')) }}"
        ],
    )
}}

with

record_customers as (

    select * from {{ ref('int_identity__record_customers') }}

),

sales_customers as (

    select * from {{ ref('stg_sales__customers') }}

),

form_submissions as (

    select * from {{ ref('stg_forms__submissions') }}

),

tickets as (

    select * from {{ ref('stg_callcentre__tickets') }}

),

source_priority as (

    select * from {{ ref('identity_source_priority') }}

),

linked_records as (

    -- linked_at is a point in time; loaded_at is UTC wall-clock time, as every staged time.
    select
        customer_id,
        source,
        source_key,
        {{ instant_as_utc('linked_at') }} as linked_at
    from record_customers

),

{% if is_incremental() %}
{%- set built_columns = adapter.get_columns_in_relation(this) | map(attribute='name') | list %}

built as (

    select
        customer_id,
        source_record_count,
        {% if 'inputs_loaded_at' in built_columns -%}
        inputs_loaded_at
        {%- else -%}
        cast(null as timestamp) as inputs_loaded_at
        {%- endif %}
    from {{ this }}

),

-- Every input time of a built row is at or before its build, and every change since came
-- later, so whatever arrived after the newest input time built is all that is new.
watermark as (

    select max(inputs_loaded_at) as loaded_at from built

),

record_counts as (

    select customer_id, count(*) as record_count
    from linked_records
    group by customer_id

),

changed_customers as (

    -- Gained or lost a record: new records, merges, splits.
    select record_counts.customer_id
    from record_counts
    left join built
        on record_counts.customer_id = built.customer_id
    where built.customer_id is null
        or built.source_record_count <> record_counts.record_count

    union

    -- A record linked again (a changed record, or one that moved between customers).
    select linked_records.customer_id
    from linked_records
    cross join watermark
    where linked_records.linked_at > watermark.loaded_at

    union

    -- A source row loaded again: an updated member, a ticket's new status.
    {%- for source, rows, key in [
        ('sales_customers', 'sales_customers', 'member_no'),
        ('forms', 'form_submissions', 'submission_id'),
        ('tickets', 'tickets', 'ticket_id'),
    ] %}
    select linked_records.customer_id
    from {{ rows }}
    cross join watermark
    inner join linked_records
        on linked_records.source = '{{ source }}'
        and linked_records.source_key = {{ rows }}.{{ key }}
    where {{ rows }}.loaded_at > watermark.loaded_at

    union
    {% endfor %}

    -- Built before inputs_loaded_at existed: everyone is rebuilt once.
    select customer_id
    from built
    where inputs_loaded_at is null

),

{% endif %}

customer_records as (

    select linked_records.*
    from linked_records
    {% if is_incremental() %}
    where linked_records.customer_id in (select customer_id from changed_customers)
    {% endif %}

),

sales_values as (

    select
        customer_records.customer_id,
        customer_records.source,
        customer_records.source_key,
        sales_customers.full_name,
        sales_customers.gender,
        sales_customers.birth_date,
        sales_customers.phone_e164,
        case when sales_customers.is_email_valid then sales_customers.email end as email,
        sales_customers.city_code,
        sales_customers.city_name,
        sales_customers.province_name,
        sales_customers.member_no,
        sales_customers.membership_level,
        sales_customers.customer_type,
        cast(null as boolean) as has_marketing_consent,
        sales_customers.registered_at as first_seen_at,
        sales_customers.updated_at as observed_at,
        greatest(customer_records.linked_at, sales_customers.loaded_at) as loaded_at
    from customer_records
    inner join sales_customers
        on customer_records.source = 'sales_customers'
        and customer_records.source_key = sales_customers.member_no

),

form_values as (

    select
        customer_records.customer_id,
        customer_records.source,
        customer_records.source_key,
        form_submissions.full_name,
        cast(null as {{ text_type() }}) as gender,
        cast(null as date) as birth_date,
        form_submissions.phone_e164,
        case when form_submissions.is_email_valid then form_submissions.email end as email,
        form_submissions.city_code,
        form_submissions.city_name,
        form_submissions.province_name,
        cast(null as {{ text_type() }}) as member_no,
        cast(null as {{ text_type() }}) as membership_level,
        cast(null as {{ text_type() }}) as customer_type,
        form_submissions.has_marketing_consent,
        form_submissions.submitted_at as first_seen_at,
        form_submissions.submitted_at as observed_at,
        greatest(customer_records.linked_at, form_submissions.loaded_at) as loaded_at
    from customer_records
    inner join form_submissions
        on customer_records.source = 'forms'
        and customer_records.source_key = form_submissions.submission_id

),

ticket_values as (

    select
        customer_records.customer_id,
        customer_records.source,
        customer_records.source_key,
        tickets.customer_name as full_name,
        cast(null as {{ text_type() }}) as gender,
        cast(null as date) as birth_date,
        tickets.contact_phone_e164 as phone_e164,
        cast(null as {{ text_type() }}) as email,
        cast(null as {{ text_type() }}) as city_code,
        cast(null as {{ text_type() }}) as city_name,
        cast(null as {{ text_type() }}) as province_name,
        tickets.member_no,
        cast(null as {{ text_type() }}) as membership_level,
        cast(null as {{ text_type() }}) as customer_type,
        cast(null as boolean) as has_marketing_consent,
        tickets.opened_at as first_seen_at,
        tickets.updated_at as observed_at,
        greatest(customer_records.linked_at, tickets.loaded_at) as loaded_at
    from customer_records
    inner join tickets
        on customer_records.source = 'tickets'
        and customer_records.source_key = tickets.ticket_id

),

all_values as (

    select * from sales_values
    union all
    select * from form_values
    union all
    select * from ticket_values

),

ranked_values as (

    -- Survivorship: the most trusted source, then the most recent row; consent: the most
    -- recent row. Source and key break ties, so a rerun picks the same values.
    select
        all_values.*,
        row_number() over (
            partition by all_values.customer_id
            order by
                source_priority.priority,
                all_values.observed_at desc,
                all_values.source,
                all_values.source_key
        ) as survivorship_rank,
        row_number() over (
            partition by all_values.customer_id
            order by all_values.observed_at desc, all_values.source, all_values.source_key
        ) as recency_rank
    from all_values
    inner join source_priority
        on all_values.source = source_priority.source

),

golden as (

    select
        customer_id,
        {{ pick_lowest('full_name', 'survivorship_rank') }} as full_name,
        {{ pick_lowest('source', 'survivorship_rank', 'full_name') }} as full_name_source,
        {{ pick_lowest('gender', 'survivorship_rank') }} as gender,
        {{ pick_lowest('birth_date', 'survivorship_rank') }} as birth_date,
        {{ pick_lowest('phone_e164', 'survivorship_rank') }} as phone_e164,
        {{ pick_lowest('source', 'survivorship_rank', 'phone_e164') }} as phone_source,
        {{ pick_lowest('email', 'survivorship_rank') }} as email,
        {{ pick_lowest('source', 'survivorship_rank', 'email') }} as email_source,
        {{ pick_lowest('city_code', 'survivorship_rank') }} as city_code,
        {{ pick_lowest('city_name', 'survivorship_rank', 'city_code') }} as city_name,
        {{ pick_lowest('province_name', 'survivorship_rank', 'city_code') }} as province_name,
        {{ pick_lowest('source', 'survivorship_rank', 'city_code') }} as city_source,
        {{ pick_lowest('member_no', 'survivorship_rank') }} as member_no,
        {{ pick_lowest('membership_level', 'survivorship_rank') }} as membership_level,
        {{ pick_lowest('customer_type', 'survivorship_rank') }} as customer_type,
        -- Consent is the customer's latest word, whichever source recorded it.
        {{ pick_lowest('has_marketing_consent', 'recency_rank') }} as has_marketing_consent,
        min(first_seen_at) as first_seen_at,
        max(observed_at) as last_seen_at,
        max(loaded_at) as inputs_loaded_at,
        count(*) as source_record_count
    from ranked_values
    group by customer_id

),

sources_seen as (

    select
        customer_id,
        {{ sorted_text_list('source', ',') }} as sources_seen
    from (select distinct customer_id, source from all_values) as distinct_sources
    group by customer_id

),

final as (

    select
        golden.customer_id,
        golden.full_name,
        golden.full_name_source,
        golden.gender,
        golden.birth_date,
        golden.phone_e164,
        golden.phone_source,
        golden.email,
        golden.email_source,
        golden.city_code,
        golden.city_name,
        golden.province_name,
        golden.city_source,
        golden.member_no,
        golden.member_no is not null as is_member,
        golden.membership_level,
        golden.customer_type,
        golden.has_marketing_consent,
        golden.first_seen_at,
        golden.last_seen_at,
        sources_seen.sources_seen,
        cast(golden.source_record_count as integer) as source_record_count,
        golden.inputs_loaded_at
    from golden
    inner join sources_seen
        on golden.customer_id = sources_seen.customer_id

)

select * from final
