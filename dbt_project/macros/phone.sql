{#- A Chinese phone number in E.164 (+8613812345678), or null when it is not one.
    Accepts the spellings sources use: 13812345678, +86 138-1234-5678, 0086 13812345678,
    86-13812345678, full-width digits, and landlines with their trunk 0 (010-12345678). -#}
{% macro phone_e164(expression) -%}
    {%- set digits = regexp_replace_all(normalize_text(expression), '[^0-9]', '') -%}
    {%- set national -%}
        case
            when {{ digits }} like '0086%' then substr({{ digits }}, 5)
            when {{ digits }} like '86%' and length({{ digits }}) = 13 then substr({{ digits }}, 3)
            else {{ digits }}
        end
    {%- endset -%}
    case
        when length({{ national }}) = 11
            and substr({{ national }}, 1, 1) = '1'
            and substr({{ national }}, 2, 1) in ('3', '4', '5', '6', '7', '8', '9')
            then '+86' || {{ national }}
        when length({{ national }}) between 10 and 12
            and substr({{ national }}, 1, 1) = '0'
            and substr({{ national }}, 2, 1) <> '0'
            then '+86' || substr({{ national }}, 2)
    end
{%- endmacro %}
