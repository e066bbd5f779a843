-- One row per campaign message sent. Touches never change once logged, so a normal run
-- appends only the touches loaded since the last one.

-- on_schema_change: the enforced contract fixes the columns and their types; 'fail' would
-- also compare the new rows' own types, which on PostgreSQL differ (text, not the contract's
-- varchar) though the values fit.

{{
    config(
        materialized=incremental_materialization(),
        unique_key='touch_id',
        on_schema_change='append_new_columns',
    )
}}

with

touches as (

    select * from {{ ref('stg_campaigns__touches') }}
    {% if is_incremental() %}
    where loaded_at > (select max(loaded_at) from {{ this }})
    {% endif %}

),

final as (

    select
        touch_id,
        campaign_id,
        member_no,
        sent_at,
        cast(sent_at as date) as sent_on,
        opened_at,
        clicked_at,
        converted_at,
        loaded_at
    from touches

)

select * from final
