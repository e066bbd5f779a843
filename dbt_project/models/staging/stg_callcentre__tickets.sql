-- Incremental: a normal run stages only the raw rows loaded since the last one.
{{
    config(
        materialized=incremental_materialization(),
        unique_key='ticket_id',
        on_schema_change='fail',
    )
}}

with

ticket_versions as (

    select * from {{ source('raw', 'tickets') }}
    {{ loaded_since_last_run() }}

),

latest as (

    -- The ticket log is append-only: a ticket's current state is its latest version.
    select
        *,
        row_number() over (
            partition by ticket_id
            order by updated_at desc, _loaded_at desc, _source_position desc
        ) as version_rank
    from ticket_versions

),

final as (

    select
        ticket_id,
        nullif(trim(member_no), '') as member_no,
        contact_phone as contact_phone_raw,
        {{ phone_e164('contact_phone') }} as contact_phone_e164,
        {{ clean_name('customer_name') }} as customer_name,
        category as ticket_category,
        coalesce(is_complaint, false) as is_complaint,
        status as ticket_status,
        {{ to_utc('opened_at') }} as opened_at,
        {{ to_utc('first_response_at') }} as first_response_at,
        {{ to_utc('resolved_at') }} as resolved_at,
        cast(satisfaction as integer) as satisfaction_score,
        description as ticket_description,
        {{ to_utc('updated_at') }} as updated_at,
        _loaded_at as loaded_at
    from latest
    where version_rank = 1

)

select * from final
