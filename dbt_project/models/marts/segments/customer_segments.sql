-- Every customer's segments on the as-of date: RFM scores and segment, value tier, loyalty,
-- the value × loyalty cell with its service strategy, lifecycle stage and customer type,
-- each with its Chinese and English label (seed segment_labels). Value is the predicted
-- lifetime value from the scoring asset where it has scored the customer, historical margin
-- otherwise (before the first scoring run, or for a customer it has not seen).

with

as_of as (

    {{ as_of_date_cte() }}

),

customers as (

    select * from {{ ref('dim_customers') }}

),

customer_orders as (

    select * from {{ ref('int_sales__customer_orders') }}

),

lifetime_values as (

    select * from {{ source('ml', 'customer_clv') }}

),

labels as (

    select * from {{ ref('segment_labels') }}

),

rfm_grid as (

    select * from {{ ref('rfm_segment_grid') }}

),

strategies as (

    select * from {{ ref('value_loyalty_strategy') }}

),

kept_orders as (

    select customer_orders.*
    from customer_orders
    cross join as_of
    where not customer_orders.is_reversed
        and customer_orders.ordered_on <= as_of.as_of_date

),

order_history as (

    select
        kept_orders.customer_id,
        count(*) as lifetime_orders,
        sum(kept_orders.margin_amount) as lifetime_margin,
        min(kept_orders.ordered_on) as first_order_on,
        max(kept_orders.ordered_on) as last_order_on,
        sum(case
            when kept_orders.ordered_on > {{ dbt.dateadd('day', -var('rfm_window_days'), 'as_of.as_of_date') }}
            then 1 else 0
        end) as window_orders,
        sum(case
            when kept_orders.ordered_on > {{ dbt.dateadd('day', -var('rfm_window_days'), 'as_of.as_of_date') }}
            then kept_orders.order_amount else 0
        end) as window_revenue,
        sum(case
            when kept_orders.ordered_on > {{ dbt.dateadd('day', -(var('lifecycle_trend_window_days') // 2), 'as_of.as_of_date') }}
            then 1 else 0
        end) as trend_recent_orders,
        sum(case
            when kept_orders.ordered_on <= {{ dbt.dateadd('day', -(var('lifecycle_trend_window_days') // 2), 'as_of.as_of_date') }}
                and kept_orders.ordered_on > {{ dbt.dateadd('day', -var('lifecycle_trend_window_days'), 'as_of.as_of_date') }}
            then 1 else 0
        end) as trend_earlier_orders
    from kept_orders
    cross join as_of
    group by kept_orders.customer_id

),

measured as (

    select
        customers.customer_id,
        customers.customer_type,
        customers.first_seen_at,
        as_of.as_of_date,
        coalesce(order_history.lifetime_orders, 0) as lifetime_orders,
        coalesce(
            lifetime_values.predicted_clv, order_history.lifetime_margin, 0
        ) as customer_value,
        case
            when lifetime_values.customer_id is not null then 'predicted_clv'
            else 'historical_margin'
        end as customer_value_basis,
        coalesce(order_history.window_orders, 0) as window_orders,
        coalesce(order_history.window_revenue, 0) as window_revenue,
        coalesce(order_history.trend_recent_orders, 0) as trend_recent_orders,
        coalesce(order_history.trend_earlier_orders, 0) as trend_earlier_orders,
        order_history.first_order_on,
        order_history.last_order_on,
        {{ dbt.datediff('order_history.last_order_on', 'as_of.as_of_date', 'day') }} as recency_days,
        {{ dbt.datediff('cast(customers.first_seen_at as date)', 'as_of.as_of_date', 'day') }} as tenure_days
    from customers
    cross join as_of
    left join order_history
        on customers.customer_id = order_history.customer_id
    left join lifetime_values
        on customers.customer_id = lifetime_values.customer_id

),

scored as (

    select
        measured.*,
        case when window_orders > 0 then ntile(5) over (
            partition by window_orders > 0 order by last_order_on, customer_id
        ) end as recency_score,
        case when window_orders > 0 then ntile(5) over (
            partition by window_orders > 0 order by window_orders, customer_id
        ) end as frequency_score,
        case when window_orders > 0 then ntile(5) over (
            partition by window_orders > 0 order by window_revenue, customer_id
        ) end as monetary_score,
        -- The share of valued customers at or above this one's value: top 5 % is <= 0.05.
        case when customer_value > 0 then cume_dist() over (
            partition by customer_value > 0 order by customer_value desc
        ) end as value_rank_share
    from measured

),

classified as (

    select
        scored.*,
        case
            when recency_score is not null
                then cast(round((frequency_score + monetary_score) / 2.0) as integer)
        end as frequency_monetary_score,
        case
            when value_rank_share is null then 'regular'
            when value_rank_share <= {{ var('value_tier_diamond_share') }} then 'diamond'
            when value_rank_share <= {{ var('value_tier_diamond_share') + var('value_tier_gold_share') }} then 'gold'
            when value_rank_share <= {{ var('value_tier_diamond_share') + var('value_tier_gold_share') + var('value_tier_silver_share') }} then 'silver'
            else 'regular'
        end as value_tier,
        (case when lifetime_orders >= {{ var('loyalty_min_orders') }} then 1 else 0 end)
        + (case when tenure_days >= {{ var('loyalty_min_tenure_days') }} then 1 else 0 end)
        + (case when recency_days <= {{ var('loyalty_max_recency_days') }} then 1 else 0 end)
            as loyalty_score,
        case
            when lifetime_orders = 0 then 'prospect'
            when recency_days > {{ var('lifecycle_decline_recency_days') }} then 'decline'
            when trend_earlier_orders > 0
                and trend_recent_orders < trend_earlier_orders * {{ var('lifecycle_decline_ratio') }}
                then 'decline'
            when tenure_days <= {{ var('lifecycle_exploration_days') }} then 'exploration'
            when lifetime_orders >= {{ var('lifecycle_stability_min_orders') }}
                and tenure_days >= {{ var('lifecycle_stability_min_tenure_days') }}
                then 'stability'
            else 'formation'
        end as lifecycle_stage
    from scored

),

segmented as (

    select
        classified.*,
        case
            when classified.recency_score is not null then rfm_grid.rfm_segment
            when classified.lifetime_orders > 0 then 'lost'
            else 'no_purchase'
        end as rfm_segment,
        case when classified.loyalty_score >= 2 then 'loyal' else 'not_loyal' end as loyalty_level,
        case
            when classified.value_tier in ('diamond', 'gold') then 'high' else 'low'
        end as value_band
    from classified
    left join rfm_grid
        on classified.recency_score = rfm_grid.recency_score
        and classified.frequency_monetary_score = rfm_grid.frequency_monetary_score

),

final as (

    select
        segmented.customer_id,
        segmented.as_of_date,
        cast(segmented.recency_days as integer) as recency_days,
        cast(segmented.window_orders as integer) as frequency_orders,
        cast(segmented.window_revenue as decimal(18, 2)) as monetary_revenue,
        cast(segmented.recency_score as integer) as recency_score,
        cast(segmented.frequency_score as integer) as frequency_score,
        cast(segmented.monetary_score as integer) as monetary_score,
        segmented.rfm_segment,
        rfm_label.label_zh as rfm_segment_zh,
        rfm_label.label_en as rfm_segment_en,
        cast(segmented.customer_value as decimal(18, 2)) as customer_value,
        segmented.customer_value_basis,
        segmented.value_tier,
        tier_label.label_zh as value_tier_zh,
        tier_label.label_en as value_tier_en,
        cast(segmented.loyalty_score as integer) as loyalty_score,
        segmented.loyalty_level,
        loyalty_label.label_zh as loyalty_level_zh,
        loyalty_label.label_en as loyalty_level_en,
        segmented.value_band,
        strategies.strategy_code as service_strategy,
        strategies.strategy_zh as service_strategy_zh,
        strategies.strategy_en as service_strategy_en,
        segmented.lifecycle_stage,
        stage_label.label_zh as lifecycle_stage_zh,
        stage_label.label_en as lifecycle_stage_en,
        segmented.customer_type,
        type_label.label_zh as customer_type_zh,
        type_label.label_en as customer_type_en
    from segmented
    left join labels as rfm_label
        on rfm_label.label_kind = 'rfm_segment' and rfm_label.code = segmented.rfm_segment
    left join labels as tier_label
        on tier_label.label_kind = 'value_tier' and tier_label.code = segmented.value_tier
    left join labels as loyalty_label
        on loyalty_label.label_kind = 'loyalty_level'
        and loyalty_label.code = segmented.loyalty_level
    left join labels as stage_label
        on stage_label.label_kind = 'lifecycle_stage'
        and stage_label.code = segmented.lifecycle_stage
    left join labels as type_label
        on type_label.label_kind = 'customer_type' and type_label.code = segmented.customer_type
    left join strategies
        on strategies.value_band = segmented.value_band
        and strategies.loyalty_level = segmented.loyalty_level

)

select * from final
