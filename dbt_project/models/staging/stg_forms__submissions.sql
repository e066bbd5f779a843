-- Incremental: a normal run stages only the raw rows loaded since the last one.
{{
    config(
        materialized=incremental_materialization(),
        unique_key='submission_id',
        on_schema_change='fail',
    )
}}

with

submissions as (

    select * from {{ source('raw', 'form_submissions') }}
    {{ loaded_since_last_run() }}

),

city_names as (

    select * from {{ ref('stg_reference__city_names') }}

),

cleaned as (

    select
        submission_id,
        form_name,
        {{ clean_name('name') }} as full_name,
        phone as phone_raw,
        {{ phone_e164('phone') }} as phone_e164,
        {{ clean_email('email') }} as email,
        city as city_raw,
        {{ city_key('city') }} as city_key,
        {{ to_utc('submitted_at') }} as submitted_at,
        channel as source_channel,
        consent_marketing as has_marketing_consent,
        nullif(trim(message), '') as message,
        case when _source_file like '%.jsonl' then 'jsonl' else 'csv' end as source_format,
        _source_file as source_file,
        _source_position as source_position,
        _loaded_at as loaded_at
    from submissions

),

final as (

    select
        cleaned.submission_id,
        cleaned.form_name,
        cleaned.full_name,
        cleaned.phone_raw,
        cleaned.phone_e164,
        cleaned.email,
        {{ is_valid_email('cleaned.email') }} as is_email_valid,
        cleaned.city_raw,
        city_names.city_code,
        city_names.province_name,
        city_names.city_name,
        cleaned.submitted_at,
        cleaned.source_channel,
        cleaned.has_marketing_consent,
        cleaned.message,
        cleaned.source_format,
        cleaned.source_file,
        cleaned.source_position,
        cleaned.loaded_at
    from cleaned
    left join city_names on cleaned.city_key = city_names.name_key

)

select * from final
