-- Customers to greet in the coming days: a birthday or a membership anniversary within the
-- care window after the as-of date, and only those who consented to marketing contact.

with

as_of as (

    {{ as_of_date_cte() }}

),

customers as (

    select * from {{ ref('dim_customers') }}

),

sales_customers as (

    select * from {{ ref('stg_sales__customers') }}

),

labels as (

    select * from {{ ref('segment_labels') }}

),

upcoming_days as (

    {%- set days = var('care_list_days') %}
    {%- for offset in range(1, days + 1) %}
    select {{ dbt.dateadd('day', offset, 'as_of.as_of_date') }} as care_date from as_of
    {% if not loop.last %}union all{% endif %}
    {%- endfor %}

),

occasions as (

    select
        customers.customer_id,
        'birthday' as care_reason,
        cast(upcoming_days.care_date as date) as care_date
    from customers
    cross join upcoming_days
    where customers.birth_date is not null
        and extract(month from customers.birth_date) = extract(month from upcoming_days.care_date)
        and extract(day from customers.birth_date) = extract(day from upcoming_days.care_date)

    union all

    select
        customers.customer_id,
        'membership_anniversary' as care_reason,
        cast(upcoming_days.care_date as date) as care_date
    from customers
    inner join sales_customers
        on customers.member_no = sales_customers.member_no
    cross join upcoming_days
    where extract(month from sales_customers.registered_at) = extract(month from upcoming_days.care_date)
        and extract(day from sales_customers.registered_at) = extract(day from upcoming_days.care_date)
        and extract(year from sales_customers.registered_at) < extract(year from upcoming_days.care_date)

),

final as (

    select
        occasions.customer_id,
        occasions.care_reason,
        reason_label.label_zh as care_reason_zh,
        reason_label.label_en as care_reason_en,
        occasions.care_date,
        customers.full_name,
        customers.phone_e164,
        customers.email,
        customers.membership_level
    from occasions
    inner join customers
        on occasions.customer_id = customers.customer_id
    left join labels as reason_label
        on reason_label.label_kind = 'care_reason' and reason_label.code = occasions.care_reason
    where customers.has_marketing_consent

)

select * from final
