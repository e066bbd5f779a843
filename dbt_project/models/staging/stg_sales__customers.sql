-- Incremental: a normal run stages only the raw rows loaded since the last one.
{{
    config(
        materialized=incremental_materialization(),
        unique_key='sales_customer_id',
        on_schema_change='fail',
    )
}}

with

customers as (

    select * from {{ source('raw', 'sales_customers') }}
    {{ loaded_since_last_run() }}

),

city_names as (

    select * from {{ ref('stg_reference__city_names') }}

),

cleaned as (

    select
        cast(id as bigint) as sales_customer_id,
        trim(member_no) as member_no,
        {{ clean_name('name') }} as full_name,
        phone as phone_raw,
        {{ phone_e164('phone') }} as phone_e164,
        {{ clean_email('email') }} as email,
        city as city_raw,
        {{ city_key('city') }} as city_key,
        birthday as birth_date,
        case gender
            when '女' then 'female'
            when '男' then 'male'
            when 'F' then 'female'
            when 'M' then 'male'
        end as gender,
        {{ to_utc('registered_at') }} as registered_at,
        membership_level as membership_level_name,
        case membership_level
            when '普通会员' then 'regular'
            when '银卡会员' then 'silver'
            when '金卡会员' then 'gold'
            when '钻石会员' then 'diamond'
        end as membership_level,
        case customer_type
            when '个人' then 'individual'
            when '企业' then 'enterprise'
            when '政府' then 'government'
        end as customer_type,
        {{ to_utc('updated_at') }} as updated_at,
        _loaded_at as loaded_at
    from customers

),

final as (

    select
        cleaned.sales_customer_id,
        cleaned.member_no,
        cleaned.full_name,
        cleaned.phone_raw,
        cleaned.phone_e164,
        cleaned.email,
        {{ is_valid_email('cleaned.email') }} as is_email_valid,
        cleaned.city_raw,
        city_names.city_code,
        city_names.province_name,
        city_names.city_name,
        cleaned.birth_date,
        cleaned.gender,
        cleaned.registered_at,
        cleaned.membership_level_name,
        cleaned.membership_level,
        cleaned.customer_type,
        cleaned.updated_at,
        cleaned.loaded_at
    from cleaned
    left join city_names on cleaned.city_key = city_names.name_key

)

select * from final
