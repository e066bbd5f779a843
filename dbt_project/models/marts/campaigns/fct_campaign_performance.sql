-- Campaign performance per campaign and channel: the funnel (reached, opened, clicked,
-- converted), revenue attributed by last touch within the attribution window, cost, ROI
-- and the new customers it brought (first order ever inside the window of its touch).

with

campaigns as (

    select * from {{ ref('stg_campaigns__campaigns') }}

),

touches as (

    select * from {{ ref('fct_campaign_touches') }}

),

customer_orders as (

    select * from {{ ref('int_sales__customer_orders') }}

),

touched_customers as (

    select * from {{ ref('int_campaigns__touch_customers') }}

),

kept_orders as (

    select
        customer_orders.*,
        row_number() over (
            partition by customer_orders.customer_id
            order by customer_orders.ordered_at, customer_orders.order_id
        ) as order_sequence
    from customer_orders
    where not customer_orders.is_reversed

),

order_touches as (

    -- Last touch: each order goes to the latest touch sent before it within the window.
    select
        kept_orders.order_id,
        kept_orders.order_amount,
        kept_orders.order_sequence,
        touched_customers.campaign_id,
        touched_customers.customer_id,
        row_number() over (
            partition by kept_orders.order_id
            order by touched_customers.sent_at desc, touched_customers.touch_id desc
        ) as touch_rank
    from kept_orders
    inner join touched_customers
        on kept_orders.customer_id = touched_customers.customer_id
        and kept_orders.ordered_at >= touched_customers.sent_at
        and kept_orders.ordered_at < {{ dbt.dateadd('day', var('attribution_window_days'), 'touched_customers.sent_at') }}

),

attributed as (

    select
        campaign_id,
        count(*) as attributed_orders,
        sum(order_amount) as attributed_revenue,
        count(distinct case when order_sequence = 1 then customer_id end) as new_customers
    from order_touches
    where touch_rank = 1
    group by campaign_id

),

funnel as (

    select
        campaign_id,
        count(*) as reached,
        sum(case when opened_at is not null then 1 else 0 end) as opened,
        sum(case when clicked_at is not null then 1 else 0 end) as clicked,
        sum(case when converted_at is not null then 1 else 0 end) as converted
    from touches
    group by campaign_id

),

final as (

    select
        campaigns.campaign_id,
        campaigns.campaign_name,
        campaigns.campaign_channel,
        campaigns.target_segment,
        campaigns.start_date,
        campaigns.end_date,
        cast(coalesce(funnel.reached, 0) as integer) as reached,
        cast(coalesce(funnel.opened, 0) as integer) as opened,
        cast(coalesce(funnel.clicked, 0) as integer) as clicked,
        cast(coalesce(funnel.converted, 0) as integer) as converted,
        {{ rounded_quotient('funnel.opened', 'nullif(funnel.reached, 0)', 6, 4) }} as open_rate,
        {{ rounded_quotient('funnel.clicked', 'nullif(funnel.reached, 0)', 6, 4) }} as click_rate,
        {{ rounded_quotient('funnel.converted', 'nullif(funnel.reached, 0)', 6, 4) }} as conversion_rate,
        cast(coalesce(attributed.attributed_orders, 0) as integer) as attributed_orders,
        cast(coalesce(attributed.attributed_revenue, 0) as decimal(18, 2)) as attributed_revenue,
        campaigns.campaign_cost,
        -- In cents, so both sides of the quotient are whole numbers.
        {{ rounded_quotient(
            '(coalesce(attributed.attributed_revenue, 0) - campaigns.campaign_cost) * 100',
            'nullif(campaigns.campaign_cost, 0) * 100',
            10, 4
        ) }} as roi,
        cast(coalesce(attributed.new_customers, 0) as integer) as new_customers,
        cast({{ var('attribution_window_days') }} as integer) as attribution_window_days
    from campaigns
    left join funnel
        on campaigns.campaign_id = funnel.campaign_id
    left join attributed
        on campaigns.campaign_id = attributed.campaign_id

)

select * from final
