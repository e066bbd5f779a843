{#- A local wall-clock time written by a source in `var('source_timezone')`, as UTC. -#}
{% macro to_utc(expression) -%}
    cast(
        ({{ expression }} at time zone '{{ var("source_timezone") }}') at time zone 'UTC'
        as timestamp
    )
{%- endmacro %}
