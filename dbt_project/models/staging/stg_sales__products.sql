with

products as (

    select * from {{ source('raw', 'sales_products') }}

),

final as (

    select
        cast(id as bigint) as product_id,
        sku,
        {{ normalize_text('name') }} as product_name,
        category as product_category,
        cast(list_price as decimal(18, 2)) as list_price,
        {{ to_utc('updated_at') }} as updated_at
    from products

)

select * from final
