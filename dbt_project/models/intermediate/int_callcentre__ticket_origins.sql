-- Tickets carry no queue or agent: each is traced to the first call from its contact number
-- on the day it was opened, whose queue and agent it then counts for.

with

tickets as (

    select * from {{ ref('stg_callcentre__tickets') }}

),

calls as (

    select * from {{ ref('fct_calls') }}

),

candidate_calls as (

    select
        tickets.ticket_id,
        calls.call_id,
        calls.queue_name,
        calls.agent_id,
        row_number() over (
            partition by tickets.ticket_id order by calls.queued_at, calls.call_id
        ) as call_rank
    from tickets
    inner join calls
        on tickets.contact_phone_e164 = calls.caller_phone_e164
        and cast(tickets.opened_at as date) = calls.call_date

),

final as (

    select
        tickets.ticket_id,
        cast(tickets.opened_at as date) as opened_on,
        tickets.opened_at,
        tickets.resolved_at,
        tickets.is_complaint,
        tickets.satisfaction_score,
        candidate_calls.call_id as origin_call_id,
        coalesce(candidate_calls.queue_name, 'unknown') as queue_name,
        coalesce(candidate_calls.agent_id, 'unknown') as agent_id
    from tickets
    left join candidate_calls
        on tickets.ticket_id = candidate_calls.ticket_id
        and candidate_calls.call_rank = 1

)

select * from final
