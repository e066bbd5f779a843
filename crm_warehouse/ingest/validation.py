"""Row validation as SQL: each contract becomes one `CASE` that names the first problem of a row.

DuckDB parses and checks (`try_cast`, `try_strptime`, regular expressions) so no Python loop
touches a row. The same expressions type the good rows on their way into `raw`.
"""

from __future__ import annotations

from datetime import datetime

from crm_warehouse.ingest.contracts import (
    DATE_FORMATS,
    FALSE_WORDS,
    LOCAL_TIME_FORMATS,
    TRUE_WORDS,
    Column,
    SourceContract,
)

SQL_TYPES = {
    "text": "varchar",
    "timestamp": "timestamp",
    "timestamptz": "timestamp",
    "date": "date",
    "decimal": "decimal(18, 2)",
    "integer": "bigint",
    "boolean": "boolean",
}
_CONTROL_CHARACTERS = r"[\x{00}-\x{08}\x{0B}\x{0C}\x{0E}-\x{1F}\x{7F}]"
_KIND_WORDS = {
    "timestamp": "a date-time",
    "timestamptz": "a date-time",
    "date": "a date",
    "decimal": "a number",
    "integer": "a whole number",
    "boolean": "yes/no",
}


def quote_identifier(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _list_literal(values: tuple[str, ...]) -> str:
    return "[" + ", ".join(literal(v) for v in values) + "]"


def typed_expression(column: Column, timezone: str, qualifier: str | None = None) -> str:
    """SQL that turns the column's text into its contract type, NULL when it does not parse.

    `qualifier` names the relation the column comes from, for use inside subqueries.
    """
    reference = quote_identifier(column.name)
    if qualifier is not None:
        reference = f"{qualifier}.{reference}"
    value = f"nullif(trim({reference}), '')"
    if column.type == "text":
        return reference
    if column.type == "timestamp":
        return (
            f"coalesce(try_strptime({value}, {_list_literal(LOCAL_TIME_FORMATS)}), "
            f"try_cast({value} as timestamp))"
        )
    if column.type == "timestamptz":
        local = typed_expression(Column(column.name, "timestamp"), timezone, qualifier)
        return (
            f"case when regexp_matches({value}, '([+-][0-9]{{2}}:?[0-9]{{2}}|Z)$') "
            f"then timezone({literal(timezone)}, try_cast({value} as timestamptz)) "
            f"else {local} end"
        )
    if column.type == "date":
        return (
            f"coalesce(cast(try_strptime({value}, {_list_literal(DATE_FORMATS)}) as date), "
            f"try_cast({value} as date))"
        )
    if column.type == "decimal":
        return f"try_cast({value} as decimal(18, 2))"
    if column.type == "integer":
        return f"try_cast({value} as bigint)"
    if column.type == "boolean":
        return (
            f"case when lower({value}) in {_tuple(TRUE_WORDS)} then true "
            f"when lower({value}) in {_tuple(FALSE_WORDS)} then false end"
        )
    raise ValueError(f"unknown column type {column.type}")


def _tuple(words: tuple[str, ...]) -> str:
    return "(" + ", ".join(literal(w) for w in words) + ")"


def _problem(code: str, field: str | None, reason_sql: str) -> str:
    field_sql = "null" if field is None else literal(field)
    return f"struct_pack(code := {literal(code)}, field := {field_sql}, reason := {reason_sql})"


def row_problem_expression(contract: SourceContract, timezone: str, local_now: datetime) -> str:
    """A CASE naming the first per-row problem (NULL for a good row), in the order a person
    would fix them: missing, unreadable, unsafe, implausible."""
    rules: list[tuple[str, str]] = []
    for column in contract.columns:
        name = quote_identifier(column.name)
        value = f"nullif(trim({name}), '')"
        label = column.name
        if column.required:
            rules.append(
                (
                    f"{value} is null",
                    _problem(
                        "missing_required", label, literal(f"required field {label} is empty")
                    ),
                )
            )
        if column.type == "text":
            rules.append(
                (
                    f"regexp_matches({name}, '{_CONTROL_CHARACTERS}')",
                    _problem(
                        "control_characters",
                        label,
                        literal(f"field {label} contains control characters"),
                    ),
                )
            )
        if column.max_length is not None:
            rules.append(
                (
                    f"length({name}) > {column.max_length}",
                    _problem(
                        "oversize_field",
                        label,
                        f"'field {label} is ' || length({name}) || ' characters, "
                        f"over the limit of {column.max_length}'",
                    ),
                )
            )
        if column.type != "text":
            typed = typed_expression(column, timezone)
            rules.append(
                (
                    f"{value} is not null and ({typed}) is null",
                    _problem(
                        "unparseable_value",
                        label,
                        f"'field {label}: ''' || left({value}, 60) || ''' is not "
                        f"{_KIND_WORDS[column.type]}'",
                    ),
                )
            )
            if column.type in ("timestamp", "timestamptz", "date"):
                horizon = literal(local_now.strftime("%Y-%m-%d %H:%M:%S"))
                rules.append(
                    (
                        f"({typed}) > timestamp {horizon} + interval 1 day",
                        _problem(
                            "future_date",
                            label,
                            f"'field {label}: ' || cast(({typed}) as varchar) || "
                            f"' is in the future'",
                        ),
                    )
                )
            if column.minimum is not None:
                rules.append(
                    (
                        f"({typed}) < {column.minimum}",
                        _problem(
                            "out_of_range",
                            label,
                            f"'field {label} is ' || cast(({typed}) as varchar) || "
                            f"', below the minimum {column.minimum:g}'",
                        ),
                    )
                )
            if column.maximum is not None:
                rules.append(
                    (
                        f"({typed}) > {column.maximum}",
                        _problem(
                            "out_of_range",
                            label,
                            f"'field {label} is ' || cast(({typed}) as varchar) || "
                            f"', above the maximum {column.maximum:g}'",
                        ),
                    )
                )
    if contract.at_least_one_of:
        empties = " and ".join(
            f"nullif(trim({quote_identifier(c)}), '') is null" for c in contract.at_least_one_of
        )
        names = ", ".join(contract.at_least_one_of)
        rules.append(
            (
                empties,
                _problem(
                    "missing_contact",
                    None,
                    literal(f"{names} are all empty: the row cannot be tied to anyone"),
                ),
            )
        )
    for earlier, later in contract.time_order:
        first = typed_expression(contract.column(earlier), timezone)
        second = typed_expression(contract.column(later), timezone)
        rules.append(
            (
                f"({second}) < ({first})",
                _problem("time_order", later, literal(f"{later} is before {earlier}")),
            )
        )
    whens = "\n        ".join(f"when {condition} then {problem}" for condition, problem in rules)
    return f"case\n        {whens}\n    end"


def key_expression(contract: SourceContract, qualifier: str | None = None) -> str:
    """The row's key as text, for quarantine and duplicate reasons (version excluded)."""
    prefix = "" if qualifier is None else f"{qualifier}."
    parts = [c for c in contract.key if c != contract.version_column]
    return "concat_ws('|', " + ", ".join(prefix + quote_identifier(c) for c in parts) + ")"
