-- One row per order with its margin (line amounts × the category's margin rate: the sales
-- system records no cost). Incremental: a normal run processes only orders changed since
-- the last one (`dbt build --full-refresh` rebuilds).

-- on_schema_change: the enforced contract fixes the columns and their types; 'fail' would
-- also compare the new rows' own types, which on PostgreSQL differ (text, not the contract's
-- varchar) though the values fit.

{{
    config(
        materialized=incremental_materialization(),
        unique_key='order_id',
        on_schema_change='append_new_columns',
    )
}}

with

orders as (

    select * from {{ ref('stg_sales__orders') }}
    {% if is_incremental() %}
    where updated_at > (select max(updated_at) from {{ this }})
    {% endif %}

),

order_lines as (

    select * from {{ ref('stg_sales__order_lines') }}

),

products as (

    select * from {{ ref('stg_sales__products') }}

),

margins as (

    select * from {{ ref('product_category_margins') }}

),

order_margins as (

    select
        order_lines.order_id,
        sum(order_lines.line_amount * coalesce(margins.margin_rate, 0)) as margin_amount,
        sum(order_lines.quantity) as item_count
    from order_lines
    inner join orders
        on order_lines.order_id = orders.order_id
    left join products
        on order_lines.product_id = products.product_id
    left join margins
        on products.product_category = margins.product_category
    group by order_lines.order_id

),

final as (

    select
        orders.order_id,
        orders.order_no,
        orders.sales_customer_id,
        orders.ordered_at,
        cast(orders.ordered_at as date) as ordered_on,
        orders.order_status,
        orders.sales_channel,
        orders.order_amount,
        cast(coalesce(order_margins.margin_amount, 0) as decimal(18, 2)) as margin_amount,
        cast(coalesce(order_margins.item_count, 0) as integer) as item_count,
        orders.is_reversed,
        orders.updated_at
    from orders
    left join order_margins
        on orders.order_id = order_margins.order_id

)

select * from final
