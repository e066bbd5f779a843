-- Calls carry only the caller's number, so they are attributed after identity resolution:
-- to the one customer holding that number; for a number a family shares, to the customer
-- who opened a ticket from it that day, else to the customer most often seen with it.

with

calls as (

    select * from {{ ref('stg_callcentre__calls') }}

),

record_customers as (

    select * from {{ ref('int_identity__record_customers') }}

),

tickets as (

    select * from {{ ref('stg_callcentre__tickets') }}

),

phone_holders as (

    select
        phone_e164,
        customer_id,
        count(*) as record_count
    from record_customers
    where phone_e164 is not null
    group by phone_e164, customer_id

),

ranked_holders as (

    select
        phone_e164,
        customer_id,
        row_number() over (
            partition by phone_e164 order by record_count desc, customer_id
        ) as holder_rank
    from phone_holders

),

phones as (

    select
        phone_e164,
        count(*) as holder_count,
        {{ pick_lowest('customer_id', 'holder_rank') }} as main_customer_id
    from ranked_holders
    group by phone_e164

),

ticket_callers as (

    select
        tickets.contact_phone_e164 as phone_e164,
        cast(tickets.opened_at as date) as opened_on,
        min(record_customers.customer_id) as customer_id
    from tickets
    inner join record_customers
        on record_customers.source = 'tickets'
        and record_customers.source_key = tickets.ticket_id
    where tickets.contact_phone_e164 is not null
    group by tickets.contact_phone_e164, cast(tickets.opened_at as date)

),

attributed as (

    select
        calls.call_id,
        calls.caller_phone_e164,
        case
            when phones.holder_count = 1 then phones.main_customer_id
            when ticket_callers.customer_id is not null then ticket_callers.customer_id
            else phones.main_customer_id
        end as customer_id,
        case
            when phones.phone_e164 is null then 'unknown number'
            when phones.holder_count = 1 then 'sole holder of the number'
            when ticket_callers.customer_id is not null then 'ticket from the number that day'
            else 'main holder of a shared number'
        end as attribution
    from calls
    left join phones
        on calls.caller_phone_e164 = phones.phone_e164
    left join ticket_callers
        on calls.caller_phone_e164 = ticket_callers.phone_e164
        and cast(calls.queued_at as date) = ticket_callers.opened_on

)

select * from attributed
