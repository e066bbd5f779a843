-- Campaign touches with the customer_id of the member they were sent to.

with

touches as (

    select * from {{ ref('fct_campaign_touches') }}

),

record_customers as (

    select * from {{ ref('int_identity__record_customers') }}

),

final as (

    select
        touches.touch_id,
        touches.campaign_id,
        touches.member_no,
        record_customers.customer_id,
        touches.sent_at,
        touches.opened_at,
        touches.clicked_at,
        touches.converted_at
    from touches
    inner join record_customers
        on record_customers.source = 'sales_customers'
        and record_customers.source_key = touches.member_no

)

select * from final
