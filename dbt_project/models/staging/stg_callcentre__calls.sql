-- Incremental: a normal run stages only the raw rows loaded since the last one.
{{
    config(
        materialized=incremental_materialization(),
        unique_key='call_id',
        on_schema_change='fail',
    )
}}

with

calls as (

    select * from {{ source('raw', 'calls') }}
    {{ loaded_since_last_run() }}

),

final as (

    select
        call_id,
        caller_number as caller_number_raw,
        {{ phone_e164('caller_number') }} as caller_phone_e164,
        agent_id,
        queue as queue_name,
        direction as call_direction,
        {{ to_utc('queued_at') }} as queued_at,
        {{ to_utc('answered_at') }} as answered_at,
        {{ to_utc('ended_at') }} as ended_at,
        answered_at is null as is_abandoned,
        cast(
            {{ dbt.datediff('queued_at', 'coalesce(answered_at, ended_at)', 'second') }}
            as integer
        ) as wait_seconds,
        cast(
            case
                when answered_at is not null
                    then {{ dbt.datediff('answered_at', 'ended_at', 'second') }}
            end as integer
        ) as talk_seconds,
        outcome as call_outcome,
        _source_file as source_file,
        _loaded_at as loaded_at
    from calls

)

select * from final
