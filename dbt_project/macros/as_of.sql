{#- The day every mart window counts back from: var `as_of_date`, else the latest order day.
    Used as a one-row CTE: `as_of as ({{ as_of_date_cte() }})`. -#}
{% macro as_of_date_cte() -%}
    {%- if var('as_of_date', none) -%}
    select cast('{{ var("as_of_date") }}' as date) as as_of_date
    {%- else -%}
    select cast(max(ordered_at) as date) as as_of_date from {{ ref('fct_orders') }}
    {%- endif -%}
{%- endmacro %}


{#- P(X <= k) for X ~ Poisson(mu), k a whole number up to `max_k` (beyond it, 1): how
    surprising a count this low is for someone who usually buys at rate mu. -#}
{% macro poisson_cdf(k, mu, max_k=12) -%}
    case when {{ k }} > {{ max_k }} then 1.0 else exp(-({{ mu }})) * (
        1.0
        {%- for i in range(1, max_k + 1) %}
        + case when {{ k }} >= {{ i }} then power({{ mu }}, {{ i }}) / {{ [1, 1, 2, 6, 24, 120, 720, 5040, 40320, 362880, 3628800, 39916800, 479001600][i] }} else 0 end
        {%- endfor %}
    ) end
{%- endmacro %}


{#- A membership level as a number, higher is better, so a drop is a downgrade. -#}
{% macro level_rank(level) -%}
    case {{ level }}
        when 'diamond' then 4
        when 'gold' then 3
        when 'silver' then 2
        when 'regular' then 1
    end
{%- endmacro %}
