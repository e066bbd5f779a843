"""The sales system (any SQLAlchemy URL): pulled incrementally by `updated_at`, upserted by id.

Each table is one batch, read from its watermark (the latest `updated_at` seen) onwards, in
chunks, every column cast to text by the source database so DuckDB validates one shape. Versions
already loaded or quarantined are dropped before counting, so a pull that finds nothing new
changes nothing; `>=` rather than `>` keeps rows that committed late with the watermark's time.

Orders and their lines can also be pulled by the local days they were ordered on (a daily
partition, for backfills): the same batches and the same dropping of versions already seen, so
a day pulled twice is loaded once, but the watermark is left alone, because a window says
nothing about what changed on other days.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import duckdb
import pandas as pd
import sqlalchemy as sa

from crm_warehouse.erasure.blocklist import Blocklist
from crm_warehouse.ingest.batches import Batch, SourceCounts, batch
from crm_warehouse.ingest.contracts import SALES_CONTRACTS, SourceContract
from crm_warehouse.ingest.rows import PARSED, create_parsed_table, write_parsed
from crm_warehouse.ingest.validation import (
    key_expression,
    literal,
    quote_identifier,
    typed_expression,
)

# Referenced tables first: orders check their customer, lines their order.
PULL_ORDER = ("customers", "products", "orders", "order_lines")
# The event tables, which have a day: an order's is the local day of its `ordered_at`, and its
# lines share it. Customers and products are state, not events: they have none.
DAILY_TABLES = ("orders", "order_lines")


class SalesSchemaError(ValueError):
    """The sales system's table lacks a column the contract needs."""


def pull_sales(
    conn: duckdb.DuckDBPyConnection,
    sales_url: str,
    tables: dict[str, str],
    timezone: str,
    chunk_rows: int = 200_000,
    now: datetime | None = None,
    *,
    blocklist: Blocklist,
    only: tuple[str, ...] = PULL_ORDER,
) -> dict[str, SourceCounts]:
    """Pull every sales table's new versions (or those of the tables in `only`), each table
    one all-or-nothing batch.

    Referenced tables go first, so an order is checked against the customers loaded just
    before it. A table is streamed from the source in chunks into one staging table and
    validated in a single pass: the batch's memory is that table's, not every chunk's
    (DuckDB keeps what a transaction dropped until it ends).
    """
    return _pull(
        conn,
        sales_url,
        tables,
        timezone,
        chunk_rows,
        now,
        blocklist,
        [logical for logical in PULL_ORDER if logical in only],
        days=None,
    )


def pull_sales_days(
    conn: duckdb.DuckDBPyConnection,
    sales_url: str,
    tables: dict[str, str],
    timezone: str,
    first: date,
    last: date,
    chunk_rows: int = 200_000,
    now: datetime | None = None,
    *,
    blocklist: Blocklist,
) -> dict[str, SourceCounts]:
    """Pull the orders ordered on the local days `first` to `last` (both included) and their
    lines, whatever their watermark; versions already loaded or quarantined are skipped.

    An order whose `ordered_at` is not a time falls on no day: only the incremental pull
    reads it (and quarantines it). The customers and products the orders name must have been
    pulled before, or the orders are quarantined as naming unknown ones.
    """
    if last < first:
        raise ValueError(f"no days from {first} to {last}")
    return _pull(
        conn,
        sales_url,
        tables,
        timezone,
        chunk_rows,
        now,
        blocklist,
        list(DAILY_TABLES),
        days=(first, last),
    )


def _pull(
    conn: duckdb.DuckDBPyConnection,
    sales_url: str,
    tables: dict[str, str],
    timezone: str,
    chunk_rows: int,
    now: datetime | None,
    blocklist: Blocklist,
    logical_tables: list[str],
    days: tuple[date, date] | None,
) -> dict[str, SourceCounts]:
    zone = ZoneInfo(timezone)
    now = now or datetime.now(zone)
    local_now = now.astimezone(zone).replace(tzinfo=None)
    loaded_at = now.astimezone(ZoneInfo("UTC")).replace(tzinfo=None)
    engine = sa.create_engine(sales_url)
    results: dict[str, SourceCounts] = {}
    try:
        with engine.connect() as source:
            for logical in logical_tables:
                contract = SALES_CONTRACTS[logical]
                table = _reflect(source, tables[logical], contract)
                with batch(conn) as current:  # creates meta.watermarks in a new warehouse
                    if days is None:
                        watermark = _watermark(conn, contract.source)
                        query = _select_since(table, contract, watermark)
                    else:
                        # A window's newest `updated_at` is no watermark: other days may hold
                        # older changes not pulled yet.
                        watermark = None
                        orders = (
                            table
                            if logical == "orders"
                            else _reflect(source, tables["orders"], SALES_CONTRACTS["orders"])
                        )
                        query = _select_days(table, orders, contract, logical, *days)
                    results[contract.source] = _pull_table(
                        conn,
                        current,
                        source,
                        query,
                        tables[logical],
                        contract,
                        timezone,
                        chunk_rows,
                        local_now,
                        loaded_at,
                        blocklist,
                        watermark=watermark,
                        advance_watermark=days is None,
                    )
    finally:
        engine.dispose()
    return results


def _pull_table(
    conn: duckdb.DuckDBPyConnection,
    current: Batch,
    source: sa.Connection,
    query: sa.Select,
    table_name: str,
    contract: SourceContract,
    timezone: str,
    chunk_rows: int,
    local_now: datetime,
    loaded_at: datetime,
    blocklist: Blocklist,
    *,
    watermark: str | None,
    advance_watermark: bool,
) -> SourceCounts:
    counts = current.source(contract.source)
    create_parsed_table(conn, contract)
    newest = watermark
    for chunk in pd.read_sql(query, source, chunksize=chunk_rows):
        chunk = chunk.astype("string")
        chunk.insert(0, "_payload", pd.Series([None] * len(chunk), dtype="string"))
        chunk.insert(0, "_position", chunk["id"].astype("Int64"))
        chunk.insert(0, "_file", table_name)
        conn.register("_chunk", chunk)
        conn.execute(f"insert into {PARSED} by name select * from _chunk")
        conn.unregister("_chunk")
        chunk_newest = chunk["updated_at"].dropna().max()
        if pd.notna(chunk_newest) and (newest is None or chunk_newest > newest):
            newest = str(chunk_newest)
    _drop_versions_already_seen(conn, contract, timezone)
    write_parsed(conn, current, contract, timezone, local_now, loaded_at, blocklist)
    conn.execute(f"drop table {PARSED}")
    if advance_watermark and newest is not None and newest != watermark:
        conn.execute(
            "insert or replace into meta.watermarks values (?, ?, ?, ?)",
            [contract.source, newest, current.batch_id, loaded_at],
        )
    if counts.rows_in:
        counts.files.append(table_name)
    return counts


def _reflect(source: sa.Connection, name: str, contract: SourceContract) -> sa.Table:
    schema, _, table_name = name.rpartition(".")
    table = sa.Table(table_name, sa.MetaData(), schema=schema or None, autoload_with=source)
    missing = [c.name for c in contract.columns if c.name not in table.c]
    if missing:
        raise SalesSchemaError(
            f"sales table {name!r} lacks column(s) {', '.join(missing)} "
            f"required by the {contract.source} contract"
        )
    return table


def _select_since(table: sa.Table, contract: SourceContract, watermark: str | None) -> sa.Select:
    columns = [sa.cast(table.c[c.name], sa.String).label(c.name) for c in contract.columns]
    query = sa.select(*columns)
    if watermark is not None:
        query = query.where(table.c.updated_at >= watermark)
    return query.order_by(table.c.updated_at, table.c.id)


def _select_days(
    table: sa.Table,
    orders: sa.Table,
    contract: SourceContract,
    logical: str,
    first: date,
    last: date,
) -> sa.Select:
    """The rows of the orders ordered from local day `first` to `last`: the orders themselves,
    or the lines of those orders."""
    # Local wall-clock text, as the watermark is: it compares the same way in SQLite (text)
    # and PostgreSQL (timestamp).
    start = f"{first.isoformat()} 00:00:00"
    end = f"{(last + timedelta(days=1)).isoformat()} 00:00:00"
    columns = [sa.cast(table.c[c.name], sa.String).label(c.name) for c in contract.columns]
    ordered_in_window = sa.and_(orders.c.ordered_at >= start, orders.c.ordered_at < end)
    if logical == "orders":
        where = ordered_in_window
    elif logical == "order_lines":
        where = table.c.order_id.in_(sa.select(orders.c.id).where(ordered_in_window))
    else:
        raise ValueError(f"sales table {logical!r} has no day: only {DAILY_TABLES} do")
    return sa.select(*columns).where(where).order_by(table.c.updated_at, table.c.id)


def _watermark(conn: duckdb.DuckDBPyConnection, source: str) -> str | None:
    rows = conn.execute(
        "select watermark from meta.watermarks where source = ?", [source]
    ).fetchall()
    return str(rows[0][0]) if rows else None


def _drop_versions_already_seen(
    conn: duckdb.DuckDBPyConnection, contract: SourceContract, timezone: str
) -> None:
    """Rows re-read at the watermark that were already loaded or quarantined are not new."""
    typed = {c.name: typed_expression(c, timezone, PARSED) for c in contract.columns}
    version = contract.version_column or "updated_at"
    match = " and ".join(
        f"loaded.{quote_identifier(c)} = {typed[c]}" for c in (*contract.upsert_key, version)
    )
    conn.execute(f"""
        delete from {PARSED}
        where exists (select 1 from raw.{contract.table} as loaded where {match})
           or exists (
                select 1 from quarantine.rejected_rows as seen
                where seen.source = {literal(contract.source)}
                  and seen.record_key = {key_expression(contract, PARSED)}
                  and seen.record_version = {PARSED}.{quote_identifier(version)}
           )
    """)
