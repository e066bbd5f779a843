{#- `numerator / denominator` as decimal(precision, scale), rounded half away from zero,
    exactly and alike on every engine. A quotient cast straight to a decimal is rounded
    from DuckDB's double (its decimal division gives one), whose .xx5 is often .xx4999…,
    but from an exact decimal on PostgreSQL and Spark. Here the rounding is done in whole
    units of the last decimal place, floor((2·|n|·10^scale + |d|) / (2·|d|)), over whole
    numbers taken to doubles (1e0), where the one division is correctly rounded and so lands
    on the integer exactly when the quotient is one. Exact when the denominator is a whole
    number and the numerator has at most `scale` decimals (counts, seconds, money to the
    cent); null when the denominator is. -#}
{% macro rounded_quotient(numerator, denominator, precision, scale) -%}
    {%- set unit = 10 ** scale -%}
    cast(
        sign({{ numerator }}) * sign({{ denominator }})
        * floor(
            (abs({{ numerator }}) * {{ 2 * unit }} + abs({{ denominator }})) * 1e0
            / (2 * abs({{ denominator }}))
        )
        / {{ unit }}e0
        as decimal({{ precision }}, {{ scale }})
    )
{%- endmacro %}
