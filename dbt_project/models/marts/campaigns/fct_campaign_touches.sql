-- One row per campaign message sent. Touches never change once logged, so a normal run
-- appends only the touches loaded since the last one.

{{
    config(
        materialized='incremental',
        unique_key='touch_id',
        on_schema_change='fail',
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
