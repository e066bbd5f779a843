-- Incremental: a normal run stages only the raw rows loaded since the last one.
{{
    config(
        materialized=incremental_materialization(),
        unique_key='order_id',
        on_schema_change='fail',
    )
}}

with

orders as (

    select * from {{ source('raw', 'sales_orders') }}
    {{ loaded_since_last_run() }}

),

final as (

    select
        cast(id as bigint) as order_id,
        order_no,
        cast(customer_id as bigint) as sales_customer_id,
        {{ to_utc('ordered_at') }} as ordered_at,
        status as order_status,
        channel as sales_channel,
        cast(total_amount as decimal(18, 2)) as order_amount,
        status in ('refunded', 'cancelled') as is_reversed,
        {{ to_utc('updated_at') }} as updated_at,
        _loaded_at as loaded_at
    from orders

)

select * from final
