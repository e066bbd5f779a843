{#- Every non-null value of the column is at least `min_value`. -#}
{% test value_at_least(model, column_name, min_value) %}

select {{ column_name }}
from {{ model }}
where {{ column_name }} < {{ min_value }}

{% endtest %}
