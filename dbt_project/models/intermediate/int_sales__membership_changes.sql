-- Each change of a member's level, from the snapshot of the sales system's customers, with
-- whether it went down (diamond > gold > silver > regular).

with

levels as (

    {#- dbt-spark snapshots only into Delta Lake, Iceberg or Hudi: Spark keeps the same
        history in a model of its own. #}
    {%- if target.type == 'spark' %}
    select * from {{ ref('int_sales__membership_level_history') }}
    {%- else %}
    select * from {{ ref('snap_sales__membership_levels') }}
    {%- endif %}

),

record_customers as (

    select * from {{ ref('int_identity__record_customers') }}

),

ranked as (

    select
        sales_customer_id,
        member_no,
        membership_level,
        cast(dbt_valid_from as date) as changed_on,
        lag(membership_level) over (
            partition by sales_customer_id order by dbt_valid_from
        ) as previous_level
    from levels

),

final as (

    select
        record_customers.customer_id,
        ranked.sales_customer_id,
        ranked.changed_on,
        ranked.previous_level,
        ranked.membership_level,
        {{ level_rank('ranked.membership_level') }}
            < {{ level_rank('ranked.previous_level') }} as is_downgrade
    from ranked
    inner join record_customers
        on record_customers.source = 'sales_customers'
        and record_customers.source_key = ranked.member_no
    where ranked.previous_level is not null
        and ranked.previous_level <> ranked.membership_level

)

select * from final
