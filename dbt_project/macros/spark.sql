{#- On Spark the dbt sources (raw, identity, ml: the tables the Python steps write) are
    Parquet folders that Spark reads where they lie, registered once as external tables in
    Spark's catalog: `dbt run-operation register_spark_sources --args '{locations: {…}}'`,
    which `crm_warehouse.target.spark` runs after exporting them. `locations` maps
    "schema.table" to an absolute folder; a table registered before is registered again. -#}
{% macro register_spark_sources(locations) -%}
    {%- for relation, location in locations.items() -%}
        {%- set schema, table = relation.split('.') -%}
        {%- do run_query('create database if not exists ' ~ schema) -%}
        {%- do run_query('drop table if exists ' ~ relation) -%}
        {%- do run_query(
            'create table ' ~ relation ~ " using parquet location '" ~ location ~ "'"
        ) -%}
        {%- do log('registered ' ~ relation ~ ' over ' ~ location, info=true) -%}
    {%- endfor -%}
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


{#- A post-hook that deletes the rows whose `column` value is no longer in `relation`'s, for
    the models updated in place. On Spark it is empty: Parquet tables take no DELETE, and the
    models that carry it are rebuilt whole there (dim_customers) or rewrite their history
    with only the rows they keep (fct_customer_alerts, `rewrites_history`). -#}
{% macro delete_rows_missing_from(column, relation) -%}
    {%- if target.type != 'spark' -%}
    delete from {{ this }} where {{ column }} not in (select {{ column }} from {{ relation }})
    {%- endif -%}
{%- endmacro %}


{#- Whether a model that keeps its own history (rows no source holds any more) writes the
    whole of it on each incremental run: on Spark, which can neither merge into nor delete
    from Parquet tables, the run overwrites the table (`insert_overwrite`, no partitions)
    with the earlier rows it keeps and the new ones. Elsewhere the new rows replace those of
    the same key (`unique_key`) and a post-hook deletes the rest. -#}
{% macro rewrites_history() -%}
    {{ return(target.type == 'spark') }}
{%- endmacro %}

{% macro history_incremental_strategy() -%}
    {{ return('insert_overwrite' if rewrites_history() else none) }}
{%- endmacro %}


{#- The earlier rows of a history model, as its incremental run reads them. Spark refuses to
    overwrite a table that the same query reads, so there `copy_earlier_rows` (a pre-hook)
    first copies them to `<table>__earlier`, and `drop_earlier_rows` (a post-hook) drops the
    copy once the table is written. -#}
{% macro earlier_rows() -%}
    {%- if rewrites_history() -%}
    {{ return(this.incorporate(path={'identifier': this.identifier ~ '__earlier'})) }}
    {%- else -%}
    {{ return(this) }}
    {%- endif -%}
{%- endmacro %}

{% macro copy_earlier_rows() -%}
    {%- if rewrites_history() and is_incremental() -%}
    {%- do run_query('drop table if exists ' ~ earlier_rows()) -%}
    {%- do run_query(
        'create table ' ~ earlier_rows() ~ ' using parquet as select * from ' ~ this
    ) -%}
    {%- endif -%}
{%- endmacro %}

{% macro drop_earlier_rows() -%}
    {%- if rewrites_history() -%}
    drop table if exists {{ earlier_rows() }}
    {%- endif -%}
{%- endmacro %}
