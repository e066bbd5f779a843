with

campaign_versions as (

    select * from {{ source('raw', 'campaigns') }}

),

latest as (

    -- The campaigns file is a snapshot reloaded whole when it changes: keep the newest load.
    select
        *,
        row_number() over (
            partition by campaign_id
            order by _loaded_at desc, _source_position desc
        ) as version_rank
    from campaign_versions

),

final as (

    select
        campaign_id,
        campaign_name,
        channel as campaign_channel,
        start_date,
        end_date,
        cast(cost as decimal(18, 2)) as campaign_cost,
        target_segment,
        _loaded_at as loaded_at
    from latest
    where version_rank = 1

)

select * from final
