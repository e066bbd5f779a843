"""Tables between the embedded DuckDB working store and a PostgreSQL warehouse.

With `CRM_TARGET=postgres` the dbt project builds on PostgreSQL, while the steps written in
Python (ingest, Splink, scoring, the gate, publishing) keep computing on DuckDB. The dbt steps
therefore push the source tables they read (raw, identity, ml) to PostgreSQL before they
build, and mirror the tables they built back into DuckDB afterwards, so every later Python
step reads exactly what PostgreSQL holds.

Rows travel as CSV through `COPY` on both ends: the fastest bulk path each engine has, with
types declared from the other side's catalogue rather than guessed from the text.
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import psycopg2
import psycopg2.extensions
import sqlalchemy as sa
from psycopg2 import sql


class TransferError(RuntimeError):
    """A table cannot be moved between the engines; the message names it and why."""


@dataclass(frozen=True)
class PostgresConnection:
    """Where the PostgreSQL warehouse is: the same `CRM_PG_*` variables dbt's profile reads."""

    host: str = "127.0.0.1"
    port: int = 5432
    user: str = "crm"
    database: str = "crm"
    password: str = field(default="", repr=False)

    @classmethod
    def from_env(cls, env: dict[str, str]) -> PostgresConnection:
        try:
            port = int(env.get("CRM_PG_PORT") or 5432)
        except ValueError as error:
            raise ValueError(f"CRM_PG_PORT must be a port number: {error}") from None
        return cls(
            host=env.get("CRM_PG_HOST") or "127.0.0.1",
            port=port,
            user=env.get("CRM_PG_USER") or "crm",
            database=env.get("CRM_PG_DATABASE") or "crm",
            password=env.get("CRM_PG_PASSWORD") or "",
        )

    @property
    def sqlalchemy_url(self) -> str:
        """The same database as a SQLAlchemy URL (psycopg2, dbt-postgres's driver), with
        the password escaped."""
        url = sa.engine.URL.create(
            "postgresql+psycopg2",
            username=self.user,
            password=self.password or None,
            host=self.host,
            port=self.port,
            database=self.database,
        )
        return url.render_as_string(hide_password=False)

    @contextmanager
    def connect(self) -> Iterator[psycopg2.extensions.connection]:
        conn = psycopg2.connect(
            host=self.host,
            port=self.port,
            user=self.user,
            password=self.password or None,
            dbname=self.database,
            # Timestamps with a zone cross as UTC text on both ends.
            options="-c TimeZone=UTC",
        )
        try:
            yield conn
        finally:
            conn.close()


Table = tuple[str, str]


def list_tables(target: PostgresConnection) -> list[Table]:
    """Every table outside PostgreSQL's own schemas, sorted."""
    with target.connect() as pg, pg.cursor() as cursor:
        cursor.execute(
            "select table_schema, table_name from information_schema.tables "
            "where table_type = 'BASE TABLE' "
            "and table_schema not in ('pg_catalog', 'information_schema') "
            "and table_schema not like 'pg\\_%' order by 1, 2"
        )
        return [(schema, table) for schema, table in cursor.fetchall()]


def push_tables(
    duckdb_conn: duckdb.DuckDBPyConnection,
    target: PostgresConnection,
    tables: Iterable[Table],
    scratch_dir: Path,
) -> dict[Table, int]:
    """Replace the rows of each `(schema, table)` in PostgreSQL with DuckDB's, in one
    transaction: readers see the old rows until the commit. A table whose columns changed
    (or that is new) is created from DuckDB's column types. Returns rows copied per table.
    """
    copied: dict[Table, int] = {}
    duckdb_conn.execute("set TimeZone = 'UTC'")
    with _scratch(scratch_dir) as scratch, target.connect() as pg:
        with pg.cursor() as cursor:
            for schema, table in tables:
                columns = _duckdb_columns(duckdb_conn, schema, table)
                csv_path = scratch / f"{schema}.{table}.csv"
                selected = ", ".join(_duckdb_csv_expression(name, kind) for name, kind in columns)
                duckdb_conn.execute(
                    f"copy (select {selected} from {_quote(schema)}.{_quote(table)}) "
                    f"to '{csv_path}' (format csv, header false)"
                )
                qualified = sql.Identifier(schema, table)
                if _postgres_column_names(cursor, schema, table) == [name for name, _ in columns]:
                    # Emptied in place, so the table keeps what PostgreSQL knows of it (a
                    # dbt contract's types and constraints, grants, dependent views), and
                    # TRUNCATE leaves no dead rows behind, which matters to an erasure.
                    cursor.execute(sql.SQL("truncate table {}").format(qualified))
                else:
                    _recreate(cursor, schema, table, columns)
                with csv_path.open("rb") as rows:
                    cursor.copy_expert(
                        sql.SQL("copy {} from stdin with (format csv)").format(qualified), rows
                    )
                copied[(schema, table)] = cursor.rowcount
                csv_path.unlink()
        pg.commit()
    return copied


def pull_tables(
    target: PostgresConnection,
    duckdb_conn: duckdb.DuckDBPyConnection,
    tables: Iterable[Table],
    scratch_dir: Path,
) -> dict[Table, int]:
    """Replace each `(schema, table)` in DuckDB with PostgreSQL's rows, in one transaction."""
    copied: dict[Table, int] = {}
    with _scratch(scratch_dir) as scratch, target.connect() as pg:
        duckdb_conn.execute("set TimeZone = 'UTC'")
        duckdb_conn.execute("begin")
        try:
            with pg.cursor() as cursor:
                for schema, table in tables:
                    columns = _postgres_columns(cursor, schema, table)
                    csv_path = scratch / f"{schema}.{table}.csv"
                    # Arrays cross as JSON, which both engines read the same way.
                    selected = sql.SQL(", ").join(
                        sql.SQL("array_to_json({})" if kind.endswith("[]") else "{}").format(
                            sql.Identifier(name)
                        )
                        for name, kind in columns
                    )
                    with csv_path.open("wb") as rows:
                        cursor.copy_expert(
                            sql.SQL("copy (select {} from {}) to stdout with (format csv)").format(
                                selected, sql.Identifier(schema, table)
                            ),
                            rows,
                        )
                    duckdb_conn.execute(f"create schema if not exists {_quote(schema)}")
                    duckdb_conn.execute(
                        f"create or replace table {_quote(schema)}.{_quote(table)} ("
                        + ", ".join(f"{_quote(name)} {kind}" for name, kind in columns)
                        + ")"
                    )
                    types = ", ".join(
                        f"'{name}': '{'JSON' if kind.endswith('[]') else kind}'"
                        for name, kind in columns
                    )
                    converted = ", ".join(
                        f"cast({_quote(name)} as {kind})" if kind.endswith("[]") else _quote(name)
                        for name, kind in columns
                    )
                    inserted = duckdb_conn.execute(
                        f"insert into {_quote(schema)}.{_quote(table)} select {converted} "
                        "from read_csv("
                        f"'{csv_path}', header = false, columns = {{{types}}}, "
                        # PostgreSQL writes NULL unquoted and the empty string as "".
                        "allow_quoted_nulls = false, auto_detect = false)"
                    )
                    copied[(schema, table)] = inserted.fetchone()[0]
                    csv_path.unlink()
        except BaseException:
            duckdb_conn.execute("rollback")
            raise
        duckdb_conn.execute("commit")
    return copied


def _recreate(
    cursor: psycopg2.extensions.cursor, schema: str, table: str, columns: list[tuple[str, str]]
) -> None:
    qualified = sql.Identifier(schema, table)
    cursor.execute(sql.SQL("create schema if not exists {}").format(sql.Identifier(schema)))
    cursor.execute(sql.SQL("drop table if exists {} cascade").format(qualified))
    cursor.execute(
        sql.SQL("create table {} ({})").format(
            qualified,
            sql.SQL(", ").join(
                sql.SQL("{} {}").format(
                    sql.Identifier(name), sql.SQL(_postgres_type(schema, table, name, kind))
                )
                for name, kind in columns
            ),
        )
    )


def _postgres_column_names(
    cursor: psycopg2.extensions.cursor, schema: str, table: str
) -> list[str]:
    cursor.execute(
        "select column_name from information_schema.columns "
        "where table_schema = %s and table_name = %s order by ordinal_position",
        (schema, table),
    )
    return [name for (name,) in cursor.fetchall()]


@contextmanager
def _scratch(scratch_dir: Path) -> Iterator[Path]:
    """CSV files hold personal data: they live only while one transfer runs."""
    scratch_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="transfer-", dir=scratch_dir) as folder:
        yield Path(folder)


def _quote(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


def _duckdb_columns(
    conn: duckdb.DuckDBPyConnection, schema: str, table: str
) -> list[tuple[str, str]]:
    columns = conn.execute(
        "select column_name, data_type from information_schema.columns "
        "where table_schema = ? and table_name = ? order by ordinal_position",
        [schema, table],
    ).fetchall()
    if not columns:
        raise TransferError(f"{schema}.{table}: no such table in the DuckDB working store")
    return [(name, kind) for name, kind in columns]


def _duckdb_csv_expression(name: str, kind: str) -> str:
    """A column as PostgreSQL's CSV reader takes it: lists become array literals."""
    column = _quote(name)
    if kind.endswith("[]"):
        element = "'\"' || replace(replace(cast(x as varchar), '\\', '\\\\'), '\"', '\\\"') || '\"'"
        elements = f"list_transform({column}, lambda x: {element})"
        return (
            f"case when {column} is null then null else "
            f"'{{' || array_to_string({elements}, ',') || '}}' end"
        )
    return column


_DECIMAL = re.compile(r"DECIMAL\((\d+),\s*(\d+)\)")
_DUCKDB_TO_POSTGRES = {
    "VARCHAR": "text",
    "BOOLEAN": "boolean",
    "TINYINT": "smallint",
    "SMALLINT": "smallint",
    "INTEGER": "integer",
    "BIGINT": "bigint",
    "UTINYINT": "smallint",
    "USMALLINT": "integer",
    "UINTEGER": "bigint",
    "UBIGINT": "numeric(20)",
    "HUGEINT": "numeric(38)",
    "FLOAT": "real",
    "DOUBLE": "double precision",
    "DATE": "date",
    "TIME": "time",
    "TIMESTAMP": "timestamp",
    "TIMESTAMP WITH TIME ZONE": "timestamptz",
    "JSON": "jsonb",
    "UUID": "uuid",
}


def _postgres_type(schema: str, table: str, column: str, kind: str) -> str:
    if kind.endswith("[]"):
        return _postgres_type(schema, table, column, kind[:-2]) + "[]"
    if match := _DECIMAL.fullmatch(kind):
        return f"numeric({match[1]}, {match[2]})"
    if kind in _DUCKDB_TO_POSTGRES:
        return _DUCKDB_TO_POSTGRES[kind]
    raise TransferError(f"{schema}.{table}.{column}: DuckDB type {kind} has no PostgreSQL twin")


_POSTGRES_ARRAYS = {
    "_text": "VARCHAR[]",
    "_varchar": "VARCHAR[]",
    "_int4": "INTEGER[]",
    "_int8": "BIGINT[]",
    "_float8": "DOUBLE[]",
    "_bool": "BOOLEAN[]",
}
_POSTGRES_TO_DUCKDB = {
    "text": "VARCHAR",
    "character varying": "VARCHAR",
    "character": "VARCHAR",
    "boolean": "BOOLEAN",
    "smallint": "SMALLINT",
    "integer": "INTEGER",
    "bigint": "BIGINT",
    "real": "FLOAT",
    "double precision": "DOUBLE",
    "date": "DATE",
    "time without time zone": "TIME",
    "timestamp without time zone": "TIMESTAMP",
    "timestamp with time zone": "TIMESTAMP WITH TIME ZONE",
    "json": "JSON",
    "jsonb": "JSON",
    "uuid": "UUID",
}


def _postgres_columns(
    cursor: psycopg2.extensions.cursor, schema: str, table: str
) -> list[tuple[str, str]]:
    cursor.execute(
        "select column_name, data_type, numeric_precision, numeric_scale, udt_name "
        "from information_schema.columns where table_schema = %s and table_name = %s "
        "order by ordinal_position",
        (schema, table),
    )
    rows = cursor.fetchall()
    if not rows:
        raise TransferError(f"{schema}.{table}: no such table in PostgreSQL")
    columns = []
    for name, kind, precision, scale, udt_name in rows:
        if kind == "ARRAY" and udt_name in _POSTGRES_ARRAYS:
            duckdb_kind = _POSTGRES_ARRAYS[udt_name]
        elif kind == "numeric":
            # An unconstrained numeric (a computed ratio) has no DuckDB decimal that holds
            # every value; analytics reads it as a double.
            duckdb_kind = f"DECIMAL({precision}, {scale})" if precision else "DOUBLE"
        elif kind in _POSTGRES_TO_DUCKDB:
            duckdb_kind = _POSTGRES_TO_DUCKDB[kind]
        else:
            raise TransferError(
                f"{schema}.{table}.{name}: PostgreSQL type {kind} has no DuckDB twin"
            )
        columns.append((name, duckdb_kind))
    return columns
