with

cities as (

    select * from {{ ref('china_cities') }}

),

aliases as (

    select * from {{ ref('city_aliases') }}

),

spellings as (

    select city_code, city_name as spelling, 1 as priority from cities
    union all
    select city_code, city_short_name, 1 from cities
    union all
    select city_code, province_name || city_name, 1 from cities
    union all
    select city_code, province_name || city_short_name, 1 from cities
    union all
    select city_code, province_short_name || city_short_name, 1 from cities
    union all
    select city_code, city_name_pinyin, 2 from cities
    union all
    select city_code, alias, 0 from aliases

),

keyed as (

    select
        city_code,
        {{ city_key('spelling') }} as name_key,
        priority
    from spellings

),

unambiguous as (

    -- A key two cities share (a pinyin spelling like "taizhou") is kept only when an alias
    -- (priority 0) says which city is meant.
    select
        name_key,
        min(priority) as best_priority
    from keyed
    group by name_key

),

chosen as (

    select distinct
        keyed.name_key,
        keyed.city_code
    from keyed
    inner join unambiguous
        on keyed.name_key = unambiguous.name_key
        and keyed.priority = unambiguous.best_priority

),

final as (

    select
        chosen.name_key,
        cities.city_code,
        cities.province_name,
        cities.city_name
    from chosen
    inner join cities on chosen.city_code = cities.city_code
    where chosen.name_key in (
        select name_key from chosen group by name_key having count(*) = 1
    )

)

select * from final
