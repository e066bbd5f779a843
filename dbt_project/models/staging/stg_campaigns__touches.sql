-- Incremental: a normal run stages only the raw rows loaded since the last one.
{{
    config(
        materialized=incremental_materialization(),
        unique_key='touch_id',
        on_schema_change='fail',
    )
}}

with

touches as (

    select * from {{ source('raw', 'campaign_touches') }}
    {{ loaded_since_last_run() }}

),

final as (

    select
        touch_id,
        campaign_id,
        nullif(trim(member_no), '') as member_no,
        contact as contact_raw,
        case
            when contact like '%@%' then {{ clean_email('contact') }}
        end as contact_email,
        case
            when contact not like '%@%' then {{ phone_e164('contact') }}
        end as contact_phone_e164,
        {{ to_utc('sent_at') }} as sent_at,
        {{ to_utc('opened_at') }} as opened_at,
        {{ to_utc('clicked_at') }} as clicked_at,
        {{ to_utc('converted_at') }} as converted_at,
        _loaded_at as loaded_at
    from touches

)

select * from final
