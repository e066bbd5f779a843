-- Orders with the customer_id of the member who placed them.

with

orders as (

    select * from {{ ref('fct_orders') }}

),

sales_customers as (

    select * from {{ ref('stg_sales__customers') }}

),

record_customers as (

    select * from {{ ref('int_identity__record_customers') }}

),

final as (

    select
        record_customers.customer_id,
        orders.order_id,
        orders.sales_customer_id,
        orders.ordered_at,
        orders.ordered_on,
        orders.order_status,
        orders.sales_channel,
        orders.order_amount,
        orders.margin_amount,
        orders.is_reversed
    from orders
    inner join sales_customers
        on orders.sales_customer_id = sales_customers.sales_customer_id
    inner join record_customers
        on record_customers.source = 'sales_customers'
        and record_customers.source_key = sales_customers.member_no

)

select * from final
