{#- The lookup key of a city as people write it: NFKC, no spaces or apostrophes, lower case,
    cut after the first 市 so that a district or street does not stop the match
    (上海市浦东新区 → 上海). Matched against stg_reference__city_names.name_key. -#}
{% macro city_key(expression) -%}
    nullif(
        split_part(
            lower({{ regexp_replace_all(normalize_text(expression), "[\\s''·.-]", '') }}),
            '市',
            1
        ),
        ''
    )
{%- endmacro %}
