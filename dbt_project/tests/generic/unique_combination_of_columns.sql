{#- No two rows share the given combination of columns (dbt_utils' test of the same name,
    without the package). -#}
{% test unique_combination_of_columns(model, columns) %}

select {{ columns | join(', ') }}, count(*) as repeated
from {{ model }}
group by {{ columns | join(', ') }}
having count(*) > 1

{% endtest %}
