-- Every customer_id ever issued and the id to use now: an app holding an old id looks it up
-- here (or follows fct_customer_id_history step by step).

with

customers as (

    select * from {{ source('identity', 'customers') }}

),

final as (

    select
        customer_id,
        coalesce(merged_into, customer_id) as current_customer_id,
        case when merged_into is null then 'active' else 'merged' end as id_status,
        created_at,
        merged_at
    from customers

)

select * from final
