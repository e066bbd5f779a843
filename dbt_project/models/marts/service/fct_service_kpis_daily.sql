-- Service-centre KPIs per day, queue and agent. Ticket figures count for the queue and agent
-- of the call that opened the ticket (int_callcentre__ticket_origins). Definitions are in
-- _service__models.yml.

with

calls as (

    select * from {{ ref('fct_calls') }}

),

ticket_origins as (

    select * from {{ ref('int_callcentre__ticket_origins') }}

),

calls_with_callback as (

    select
        calls.*,
        lead(calls.queued_at) over (
            partition by calls.caller_phone_e164 order by calls.queued_at, calls.call_id
        ) as next_call_at
    from calls

),

call_figures as (

    select
        call_date as kpi_date,
        queue_name,
        agent_id,
        count(*) as calls_offered,
        sum(case when not is_abandoned then 1 else 0 end) as calls_answered,
        sum(case when is_abandoned then 1 else 0 end) as calls_abandoned,
        sum(case
            when not is_abandoned and wait_seconds <= {{ var('service_level_seconds') }}
            then 1 else 0
        end) as calls_answered_in_target,
        sum(case when not is_abandoned then wait_seconds else 0 end) as total_wait_seconds,
        sum(case when not is_abandoned then talk_seconds else 0 end) as total_talk_seconds,
        sum(case
            when not is_abandoned
                and (
                    next_call_at is null
                    or next_call_at > {{ dbt.dateadd('day', var('first_contact_resolution_days'), 'queued_at') }}
                )
            then 1 else 0
        end) as calls_resolved_first_contact
    from calls_with_callback
    group by call_date, queue_name, agent_id

),

ticket_figures as (

    select
        opened_on as kpi_date,
        queue_name,
        agent_id,
        count(*) as tickets_opened,
        sum(case when resolved_at is not null then 1 else 0 end) as tickets_resolved,
        -- Seconds, not minutes: engines count minutes differently (DuckDB and PostgreSQL
        -- the minute boundaries crossed, Spark whole minutes elapsed), seconds alike.
        sum(case
            when resolved_at is not null
            then {{ dbt.datediff('opened_at', 'resolved_at', 'second') }} else 0
        end) as total_resolution_seconds,
        sum(case when is_complaint then 1 else 0 end) as complaints,
        count(satisfaction_score) as csat_responses,
        sum(satisfaction_score) as total_satisfaction
    from ticket_origins
    group by opened_on, queue_name, agent_id

),

combined as (

    select
        coalesce(call_figures.kpi_date, ticket_figures.kpi_date) as kpi_date,
        coalesce(call_figures.queue_name, ticket_figures.queue_name) as queue_name,
        coalesce(call_figures.agent_id, ticket_figures.agent_id) as agent_id,
        coalesce(call_figures.calls_offered, 0) as calls_offered,
        coalesce(call_figures.calls_answered, 0) as calls_answered,
        coalesce(call_figures.calls_abandoned, 0) as calls_abandoned,
        coalesce(call_figures.calls_answered_in_target, 0) as calls_answered_in_target,
        coalesce(call_figures.total_wait_seconds, 0) as total_wait_seconds,
        coalesce(call_figures.total_talk_seconds, 0) as total_talk_seconds,
        coalesce(call_figures.calls_resolved_first_contact, 0) as calls_resolved_first_contact,
        coalesce(ticket_figures.tickets_opened, 0) as tickets_opened,
        coalesce(ticket_figures.tickets_resolved, 0) as tickets_resolved,
        coalesce(ticket_figures.total_resolution_seconds, 0) as total_resolution_seconds,
        coalesce(ticket_figures.complaints, 0) as complaints,
        coalesce(ticket_figures.csat_responses, 0) as csat_responses,
        ticket_figures.total_satisfaction
    from call_figures
    full outer join ticket_figures
        on call_figures.kpi_date = ticket_figures.kpi_date
        and call_figures.queue_name = ticket_figures.queue_name
        and call_figures.agent_id = ticket_figures.agent_id

),

final as (

    select
        kpi_date,
        queue_name,
        agent_id,
        cast(calls_offered as integer) as calls_offered,
        cast(calls_answered as integer) as calls_answered,
        cast(calls_abandoned as integer) as calls_abandoned,
        {{ rounded_quotient('calls_answered', 'nullif(calls_offered, 0)', 6, 4) }} as answer_rate,
        {{ rounded_quotient('total_wait_seconds', 'nullif(calls_answered, 0)', 10, 1) }} as average_speed_of_answer_seconds,
        {{ rounded_quotient('calls_answered_in_target', 'nullif(calls_offered, 0)', 6, 4) }} as service_level,
        {{ rounded_quotient('total_talk_seconds', 'nullif(calls_answered, 0)', 10, 1) }} as average_handle_time_seconds,
        {{ rounded_quotient('calls_resolved_first_contact', 'nullif(calls_answered, 0)', 6, 4) }} as first_contact_resolution_rate,
        cast(tickets_opened as integer) as tickets_opened,
        cast(tickets_resolved as integer) as tickets_resolved,
        {{ rounded_quotient(
            'total_resolution_seconds', '3600 * nullif(tickets_resolved, 0)', 10, 2
        ) }} as average_resolution_hours,
        cast(complaints as integer) as complaints,
        {{ rounded_quotient('complaints', 'nullif(tickets_opened, 0)', 6, 4) }} as complaint_rate,
        {{ rounded_quotient('total_satisfaction', 'nullif(csat_responses, 0)', 4, 2) }} as csat,
        cast(csat_responses as integer) as csat_responses
    from combined

)

select * from final
