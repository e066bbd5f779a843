-- One wide row per customer: who they are (dim_customers), what they bought, how they were
-- served and which campaigns reached them.

with

customers as (

    select * from {{ ref('dim_customers') }}

),

record_customers as (

    select * from {{ ref('int_identity__record_customers') }}

),

customer_orders as (

    select * from {{ ref('int_sales__customer_orders') }}

),

call_customers as (

    select * from {{ ref('int_callcentre__call_customers') }}

),

calls as (

    select * from {{ ref('stg_callcentre__calls') }}

),

tickets as (

    select * from {{ ref('stg_callcentre__tickets') }}

),

touch_customers as (

    select * from {{ ref('int_campaigns__touch_customers') }}

),

purchases as (

    select
        customer_id,
        count(*) as order_count,
        sum(order_amount) as revenue,
        min(ordered_at) as first_order_at,
        max(ordered_at) as last_order_at
    from customer_orders
    where not is_reversed
    group by customer_id

),

reversals as (

    select
        customer_id,
        count(*) as reversed_order_count
    from customer_orders
    where is_reversed
    group by customer_id

),

call_summary as (

    select
        call_customers.customer_id,
        count(*) as call_count,
        sum(case when calls.is_abandoned then 1 else 0 end) as abandoned_call_count,
        max(calls.queued_at) as last_call_at
    from call_customers
    inner join calls
        on call_customers.call_id = calls.call_id
    where call_customers.customer_id is not null
    group by call_customers.customer_id

),

ticket_summary as (

    select
        record_customers.customer_id,
        count(*) as ticket_count,
        sum(case when tickets.is_complaint then 1 else 0 end) as complaint_count,
        sum(case when tickets.resolved_at is null then 1 else 0 end) as open_ticket_count,
        avg(tickets.satisfaction_score) as average_satisfaction,
        max(tickets.opened_at) as last_ticket_at
    from tickets
    inner join record_customers
        on record_customers.source = 'tickets'
        and record_customers.source_key = tickets.ticket_id
    group by record_customers.customer_id

),

campaign_summary as (

    select
        customer_id,
        count(*) as touch_count,
        sum(case when opened_at is not null then 1 else 0 end) as opened_count,
        sum(case when clicked_at is not null then 1 else 0 end) as clicked_count,
        sum(case when converted_at is not null then 1 else 0 end) as converted_count,
        max(sent_at) as last_touch_at
    from touch_customers
    group by customer_id

),

final as (

    select
        customers.customer_id,
        customers.full_name,
        customers.gender,
        customers.birth_date,
        customers.phone_e164,
        customers.email,
        customers.city_code,
        customers.city_name,
        customers.province_name,
        customers.member_no,
        customers.is_member,
        customers.membership_level,
        customers.customer_type,
        customers.has_marketing_consent,
        customers.first_seen_at,
        customers.last_seen_at,
        customers.sources_seen,
        cast(coalesce(purchases.order_count, 0) as integer) as order_count,
        cast(coalesce(reversals.reversed_order_count, 0) as integer) as reversed_order_count,
        cast(coalesce(purchases.revenue, 0) as decimal(18, 2)) as revenue,
        purchases.first_order_at,
        purchases.last_order_at,
        {{ rounded_quotient('purchases.revenue', 'nullif(purchases.order_count, 0)', 18, 2) }}
            as average_basket,
        cast(coalesce(call_summary.call_count, 0) as integer) as call_count,
        cast(
            coalesce(call_summary.abandoned_call_count, 0) as integer
        ) as abandoned_call_count,
        call_summary.last_call_at,
        cast(coalesce(ticket_summary.ticket_count, 0) as integer) as ticket_count,
        cast(coalesce(ticket_summary.complaint_count, 0) as integer) as complaint_count,
        cast(coalesce(ticket_summary.open_ticket_count, 0) as integer) as open_ticket_count,
        cast(ticket_summary.average_satisfaction as decimal(4, 2)) as average_satisfaction,
        ticket_summary.last_ticket_at,
        cast(coalesce(campaign_summary.touch_count, 0) as integer) as campaign_touch_count,
        cast(coalesce(campaign_summary.opened_count, 0) as integer) as campaign_opened_count,
        cast(coalesce(campaign_summary.clicked_count, 0) as integer) as campaign_clicked_count,
        cast(
            coalesce(campaign_summary.converted_count, 0) as integer
        ) as campaign_converted_count,
        campaign_summary.last_touch_at as last_campaign_touch_at
    from customers
    left join purchases
        on customers.customer_id = purchases.customer_id
    left join reversals
        on customers.customer_id = reversals.customer_id
    left join call_summary
        on customers.customer_id = call_summary.customer_id
    left join ticket_summary
        on customers.customer_id = ticket_summary.customer_id
    left join campaign_summary
        on customers.customer_id = campaign_summary.customer_id

)

select * from final
