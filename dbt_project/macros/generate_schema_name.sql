{#- Each folder's +schema is used verbatim (raw, staging, marts…), so an asset key is its
    warehouse address. Without a custom schema, models land in the target's schema. -#}
{% macro generate_schema_name(custom_schema_name, node) -%}
    {%- if custom_schema_name is none -%}
        {{ target.schema }}
    {%- else -%}
        {{ custom_schema_name | trim }}
    {%- endif -%}
{%- endmacro %}
