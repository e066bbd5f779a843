-- Each resolved source record with the customer it belongs to now.

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
