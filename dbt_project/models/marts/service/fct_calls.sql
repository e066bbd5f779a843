-- One row per call. Calls never change once logged, so a normal run appends only the calls
-- loaded since the last one.

-- on_schema_change: the enforced contract fixes the columns and their types; 'fail' would
-- also compare the new rows' own types, which on PostgreSQL differ (text, not the contract's
-- varchar) though the values fit.

{{
    config(
        materialized=incremental_materialization(),
        unique_key='call_id',
        on_schema_change='append_new_columns',
    )
}}

with

calls as (

    select * from {{ ref('stg_callcentre__calls') }}
    {% if is_incremental() %}
    where loaded_at > (select max(loaded_at) from {{ this }})
    {% endif %}

),

final as (

    select
        call_id,
        caller_phone_e164,
        agent_id,
        queue_name,
        call_direction,
        queued_at,
        cast(queued_at as date) as call_date,
        answered_at,
        ended_at,
        is_abandoned,
        wait_seconds,
        talk_seconds,
        call_outcome,
        loaded_at
    from calls

)

select * from final
