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


{#- How the models that grow by new rows are built: incrementally, except on Spark, where
    dbt-spark merges rows by key only into Delta Lake, Iceberg or Hudi tables. None of the
    three installs here for Spark 4 (their jars come from Maven Central, not PyPI), and
    appending to Parquet would keep every old version of a row, so on Spark these models are
    rebuilt whole each run. -#}
{% macro incremental_materialization() -%}
    {{ return('table' if target.type == 'spark' else 'incremental') }}
{%- endmacro %}


{#- How the views that other engines' readers query are built: as views, except on Spark,
    whose views hold no files: what Spark builds reaches the working store as the Parquet
    of its tables (crm_warehouse.target.spark), so there they are tables. -#}
{% macro view_materialization() -%}
    {{ return('table' if target.type == 'spark' else 'view') }}
{%- endmacro %}
