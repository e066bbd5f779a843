"""The scoring queries are written once, in DuckDB's SQL, and run on Spark through sqlglot
(the transpiler Splink already brings), so both engines read the same definitions."""

from __future__ import annotations

import re
from datetime import date, datetime

import sqlglot

_PARAMETER = re.compile(r"\$([a-z_]+)")


def _literal(value: date | datetime) -> str:
    if isinstance(value, datetime):
        return f"timestamp '{value.isoformat(sep=' ')}'"
    return f"date '{value.isoformat()}'"


def query_for(dialect: str, sql: str, values: dict[str, date | datetime]) -> str:
    """`sql` (DuckDB's dialect, `$name` parameters) for `dialect` ("spark"), its parameters
    written in as literals and without its final ordering: an engine that spreads rows over
    executors orders only where the reader asks."""
    written = _PARAMETER.sub(lambda match: _literal(values[match.group(1)]), sql)
    expression = sqlglot.parse_one(written, read="duckdb")
    expression.set("order", None)
    return expression.sql(dialect=dialect)
