-- Spark's history of each member's membership level, in place of the snapshot
-- snap_sales__membership_levels, which dbt-spark writes only into Delta Lake, Iceberg or
-- Hudi tables (none installs here for Spark 4). The same type-2 record by the same rule as
-- the snapshot's timestamp strategy: a new version whenever a member's updated_at moves past
-- the last one recorded, valid from that updated_at. Appended to, never rebuilt: no source
-- holds the levels of the past.

{{
    config(
        enabled=target.type == 'spark',
        materialized='incremental',
        incremental_strategy='append',
        full_refresh=false,
    )
}}

with

customers as (

    select * from {{ ref('stg_sales__customers') }}

),

{% if is_incremental() %}

recorded as (

    select
        sales_customer_id,
        max(dbt_valid_from) as last_valid_from
    from {{ this }}
    group by sales_customer_id

),

{% endif %}

new_versions as (

    select
        customers.sales_customer_id,
        customers.member_no,
        customers.membership_level,
        customers.updated_at as dbt_valid_from
    from customers
    {% if is_incremental() %}
    left join recorded
        on customers.sales_customer_id = recorded.sales_customer_id
    where recorded.sales_customer_id is null
        or customers.updated_at > recorded.last_valid_from
    {% endif %}

)

select * from new_versions
