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
