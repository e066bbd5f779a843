{#- A local wall-clock time written by a source in `var('source_timezone')`, as UTC. -#}
{% macro to_utc(expression) -%}
    {{ return(adapter.dispatch('to_utc', 'crm_warehouse')(expression)) }}
{%- endmacro %}

{% macro default__to_utc(expression) -%}
    cast(
        ({{ expression }} at time zone '{{ var("source_timezone") }}') at time zone 'UTC'
        as timestamp
    )
{%- endmacro %}


{#- Spark's sessions run in UTC (the profile), so its timestamps are UTC instants. -#}
{% macro spark__to_utc(expression) -%}
    to_utc_timestamp({{ expression }}, '{{ var("source_timezone") }}')
{%- endmacro %}


{#- In an incremental staging model, keep only the raw rows loaded since the model's last
    run (every raw row carries `_loaded_at`); on a first or full-refresh build, all of them. -#}
{% macro loaded_since_last_run() -%}
    {%- if is_incremental() %}
    where _loaded_at > (select max(loaded_at) from {{ this }})
    {%- endif %}
{%- endmacro %}


{#- A point in time (`timestamp with time zone`, as the Python steps write them) as UTC
    wall-clock time, the way every staged time is kept. Spark has one timestamp type, an
    instant, which its UTC session already shows as UTC. -#}
{% macro instant_as_utc(expression) -%}
    {{ return(adapter.dispatch('instant_as_utc', 'crm_warehouse')(expression)) }}
{%- endmacro %}

{% macro default__instant_as_utc(expression) -%}
    cast({{ expression }} at time zone 'UTC' as timestamp)
{%- endmacro %}

{% macro spark__instant_as_utc(expression) -%}
    cast({{ expression }} as timestamp)
{%- endmacro %}
