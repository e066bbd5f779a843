-- Every customer's churn risk, lifetime value and next retention action: the scores of the
-- scoring asset (schema ml) beside the customer's segments, with the first matching rule
-- of the seed next_action_rules.

with

customers as (

    select * from {{ ref('dim_customers') }}

),

segments as (

    select * from {{ ref('customer_segments') }}

),

churn_scores as (

    select * from {{ source('ml', 'churn_scores') }}

),

lifetime_values as (

    select * from {{ source('ml', 'customer_clv') }}

),

rules as (

    select * from {{ ref('next_action_rules') }}

),

labels as (

    select * from {{ ref('segment_labels') }}

),

scored as (

    select
        customers.customer_id,
        segments.as_of_date,
        coalesce(customers.has_marketing_consent, false) as has_marketing_consent,
        churn_scores.churn_probability,
        coalesce(churn_scores.churn_risk_band, 'unscored') as churn_risk_band,
        churn_scores.churn_reason_codes,
        churn_scores.churn_reasons_zh,
        churn_scores.churn_reasons_en,
        churn_scores.model_version as churn_model_version,
        lifetime_values.probability_alive,
        lifetime_values.expected_purchases,
        lifetime_values.predicted_clv,
        lifetime_values.horizon_days as clv_horizon_days,
        lifetime_values.model_version as clv_model_version,
        segments.value_tier,
        segments.value_tier_zh,
        segments.value_tier_en,
        segments.rfm_segment,
        segments.lifecycle_stage
    from customers
    inner join segments
        on customers.customer_id = segments.customer_id
    left join churn_scores
        on customers.customer_id = churn_scores.customer_id
    left join lifetime_values
        on customers.customer_id = lifetime_values.customer_id

),

matched_rules as (

    select
        scored.customer_id,
        rules.rule_order,
        row_number() over (
            partition by scored.customer_id order by rules.rule_order
        ) as match_rank
    from scored
    inner join rules
        on rules.churn_risk_band in ('*', scored.churn_risk_band)
        and rules.value_tier in ('*', scored.value_tier)
        and rules.lifecycle_stage in ('*', scored.lifecycle_stage)
        and (not rules.requires_consent or scored.has_marketing_consent)

),

actions as (

    select
        matched_rules.customer_id,
        rules.*
    from matched_rules
    inner join rules
        on matched_rules.rule_order = rules.rule_order
    where matched_rules.match_rank = 1

),

final as (

    select
        scored.customer_id,
        scored.as_of_date,
        cast(scored.churn_probability as decimal(5, 4)) as churn_probability,
        scored.churn_risk_band,
        band_label.label_zh as churn_risk_band_zh,
        band_label.label_en as churn_risk_band_en,
        scored.churn_reason_codes,
        scored.churn_reasons_zh,
        scored.churn_reasons_en,
        cast(scored.probability_alive as decimal(5, 4)) as probability_alive,
        cast(scored.expected_purchases as decimal(12, 4)) as expected_purchases,
        cast(scored.predicted_clv as decimal(18, 2)) as predicted_clv,
        cast(scored.clv_horizon_days as integer) as clv_horizon_days,
        scored.value_tier,
        scored.value_tier_zh,
        scored.value_tier_en,
        scored.rfm_segment,
        scored.lifecycle_stage,
        scored.has_marketing_consent,
        actions.action_code as next_action,
        actions.action_zh as next_action_zh,
        actions.action_en as next_action_en,
        actions.action_owner,
        owner_label.label_zh as action_owner_zh,
        owner_label.label_en as action_owner_en,
        actions.reason_zh as action_reason_zh,
        actions.reason_en as action_reason_en,
        cast(actions.rule_order as integer) as action_rule,
        scored.churn_model_version,
        scored.clv_model_version
    from scored
    left join actions
        on scored.customer_id = actions.customer_id
    left join labels as band_label
        on band_label.label_kind = 'churn_risk_band'
        and band_label.code = scored.churn_risk_band
    left join labels as owner_label
        on owner_label.label_kind = 'action_owner'
        and owner_label.code = actions.action_owner

)

select * from final
