-- Incremental: a normal run stages only the raw rows loaded since the last one.
{{
    config(
        materialized=incremental_materialization(),
        unique_key='order_line_id',
        on_schema_change='fail',
    )
}}

with

order_lines as (

    select * from {{ source('raw', 'sales_order_lines') }}
    {{ loaded_since_last_run() }}

),

final as (

    select
        cast(id as bigint) as order_line_id,
        cast(order_id as bigint) as order_id,
        cast(product_id as bigint) as product_id,
        cast(quantity as integer) as quantity,
        cast(unit_price as decimal(18, 2)) as unit_price,
        cast(amount as decimal(18, 2)) as line_amount,
        {{ to_utc('updated_at') }} as updated_at,
        _loaded_at as loaded_at
    from order_lines

)

select * from final
