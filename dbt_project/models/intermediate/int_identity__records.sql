-- Every source record that says who a person is, in the record schema identity
-- resolution reads (crm_warehouse.identity.records). Calls carry only a number and
-- campaign touches a member number: they are attributed after resolution, not matched.
-- A view: it only projects three staging tables, which identity resolution reads once a run;
-- writing their 1.8M rows again at 1M customers cost 4.8 s of every run.

{{ config(materialized=view_materialization()) }}

with

sales_customers as (

    select * from {{ ref('stg_sales__customers') }}

),

form_submissions as (

    select * from {{ ref('stg_forms__submissions') }}

),

tickets as (

    select * from {{ ref('stg_callcentre__tickets') }}

),

sales_records as (

    select
        'sales_customers' as source,
        member_no as source_key,
        full_name as name,
        gender,
        cast(birth_date as {{ text_type() }}) as birth_date,
        phone_e164 as phone,
        case when is_email_valid then email end as email,
        cast(null as {{ text_type() }}) as id_card,
        cast(null as {{ text_type() }}) as address,
        city_code as city,
        cast(null as {{ text_type() }}) as postcode,
        member_no,
        updated_at
    from sales_customers

),

form_records as (

    select
        'forms' as source,
        submission_id as source_key,
        full_name as name,
        cast(null as {{ text_type() }}) as gender,
        cast(null as {{ text_type() }}) as birth_date,
        phone_e164 as phone,
        case when is_email_valid then email end as email,
        cast(null as {{ text_type() }}) as id_card,
        cast(null as {{ text_type() }}) as address,
        city_code as city,
        cast(null as {{ text_type() }}) as postcode,
        cast(null as {{ text_type() }}) as member_no,
        submitted_at as updated_at
    from form_submissions

),

ticket_records as (

    select
        'tickets' as source,
        ticket_id as source_key,
        customer_name as name,
        cast(null as {{ text_type() }}) as gender,
        cast(null as {{ text_type() }}) as birth_date,
        contact_phone_e164 as phone,
        cast(null as {{ text_type() }}) as email,
        cast(null as {{ text_type() }}) as id_card,
        cast(null as {{ text_type() }}) as address,
        cast(null as {{ text_type() }}) as city,
        cast(null as {{ text_type() }}) as postcode,
        member_no,
        updated_at
    from tickets

),

unioned as (

    select * from sales_records
    union all
    select * from form_records
    union all
    select * from ticket_records

)

select * from unioned
