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
