-- Each change of customer ids: a merge (old id retired into the older survivor) or a split
-- (some of an id's records found to be another person and given that person's id).

with

history as (

    select * from {{ source('identity', 'customer_id_history') }}

),

final as (

    select
        old_customer_id,
        new_customer_id,
        change_kind,
        reason,
        changed_at,
        run_id
    from history

)

select * from final
