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


def typed_column(name: str) -> str:
    """The name of the column holding `name` typed, beside its text, during validation."""
    return quote_identifier(f"__typed__{name}")


def row_problem_expression(contract: SourceContract, local_now: datetime) -> str:
    """A CASE naming the first per-row problem (NULL for a good row), in the order a person
    would fix them: missing, unsafe, oversize, unreadable, implausible, inconsistent.

    It reads each column's text and, for typed columns, the typed value computed once
    beside it (`typed_column`), so no parse runs twice.
    """
    rules: list[tuple[str, str]] = []
    for column in contract.columns:
        if column.required:
            rules.append(
                (
                    f"nullif(trim({quote_identifier(column.name)}), '') is null",
                    _problem(
                        "missing_required",
                        column.name,
                        literal(f"required field {column.name} is empty"),
                    ),
                )
            )
    text_columns = [c for c in contract.columns if c.type == "text"]
    if text_columns:
        # One scan of all text for the rare row with a control character; only such a row
        # pays for finding which field holds it.
        joined = "concat(" + ", ".join(quote_identifier(c.name) for c in text_columns) + ")"
        which = " ".join(
            f"when regexp_matches({quote_identifier(c.name)}, '{_CONTROL_CHARACTERS}') "
            f"then {literal(c.name)}"
            for c in text_columns
        )
        rules.append(
            (
                f"regexp_matches({joined}, '{_CONTROL_CHARACTERS}')",
                f"struct_pack(code := 'control_characters', field := case {which} end, "
                f"reason := 'field ' || case {which} end || ' contains control characters')",
            )
        )
    for column in contract.columns:
        if column.max_length is not None:
            name = quote_identifier(column.name)
            rules.append(
                (
                    f"length({name}) > {column.max_length}",
                    _problem(
                        "oversize_field",
                        column.name,
                        f"'field {column.name} is ' || length({name}) || ' characters, "
                        f"over the limit of {column.max_length}'",
                    ),
                )
            )
    horizon = literal(local_now.strftime("%Y-%m-%d %H:%M:%S"))
    for column in contract.columns:
        if column.type == "text":
            continue
        label = column.name
        value = f"nullif(trim({quote_identifier(label)}), '')"
        typed = typed_column(label)
        quote = "''''"  # the SQL literal for one single quote
        rules.append(
            (
                f"{value} is not null and {typed} is null",
                _problem(
                    "unparseable_value",
                    label,
                    f"'field {label}: ' || {quote} || left({value}, 60) || {quote} || "
                    f"' is not {_KIND_WORDS[column.type]}'",
                ),
            )
        )
        if column.type in ("timestamp", "timestamptz", "date"):
            ahead = column.planned_days_ahead
            too_late = "is in the future" if ahead == 0 else f"is over {ahead} days ahead"
            rules.append(
                (
                    f"{typed} > timestamp {horizon} + interval {ahead + 1} day",
                    _problem(
                        "future_date",
                        label,
                        f"'field {label}: ' || cast({typed} as varchar) || ' {too_late}'",
                    ),
                )
            )
        if column.minimum is not None:
            rules.append(
                (
                    f"{typed} < {column.minimum}",
                    _problem(
                        "out_of_range",
                        label,
                        f"'field {label} is ' || cast({typed} as varchar) || "
                        f"', below the minimum {column.minimum:g}'",
                    ),
                )
            )
        if column.maximum is not None:
            rules.append(
                (
                    f"{typed} > {column.maximum}",
                    _problem(
                        "out_of_range",
                        label,
                        f"'field {label} is ' || cast({typed} as varchar) || "
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
        rules.append(
            (
                f"{typed_column(later)} < {typed_column(earlier)}",
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
