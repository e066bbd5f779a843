-- Each resolved source record with the customer it belongs to now.
-- A view: a projection of identity.records, which the identity step keeps current; a copy
-- cost 2.4 s of every run at 1M customers, before anything after it could start.

{{ config(materialized=view_materialization()) }}

with

identity_records as (

    select * from {{ source('identity', 'records') }}

),

final as (

    select
        record_id,
        source,
        source_key,
        customer_id,
        phone as phone_e164,
        linked_at
    from identity_records

)

select * from final
