"""Taking a person's rows out of databases and files, leaving no recoverable copy behind.

Deleted DuckDB rows stay in the file's free blocks until they are overwritten, so every
database an erasure touched is rewritten whole (`COPY FROM DATABASE` into a new file, then an
atomic rename). Text files are rewritten without the person's lines, matched on the person's
identifiers as bytes, which are ASCII and so the same in UTF-8 and GBK exports.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from pathlib import Path

import duckdb
import sqlalchemy as sa

from crm_warehouse.erasure.footprint import Footprint, qualified_tables
from crm_warehouse.erasure.rules import QUARANTINE_KEY_KINDS, QUARANTINE_TABLE, Rule
from crm_warehouse.ingest.contracts import ALL_CONTRACTS

_RAW_SOURCES = {contract.table: contract.source for contract in ALL_CONTRACTS}
_TOKEN_KINDS = ("email", "member", "form", "ticket", "call", "touch")


class UncoveredTables(RuntimeError):
    """Tables the erasure map does not know: erasing would leave the person in them."""


class TokenMatcher:
    """Finds the person's identifiers in text: phones in any spacing, emails, string ids."""

    def __init__(self, footprint: Footprint, extra_tokens: Iterable[str] = ()) -> None:
        tokens = sorted(
            {value for kind in _TOKEN_KINDS for value in footprint.values(kind)}
            | set(extra_tokens),
            key=len,
            reverse=True,
        )
        phones = footprint.values("phone")
        self._tokens = (
            re.compile(
                rb"(?<![0-9A-Za-z])(?:"
                + b"|".join(re.escape(token.encode()) for token in tokens)
                + rb")(?![0-9A-Za-z])",
                re.IGNORECASE,
            )
            if tokens
            else None
        )
        self._phones = (
            re.compile(
                rb"(?<!\d)(?:0086|86)?(?:"
                + b"|".join(re.escape(phone.encode()) for phone in phones)
                + rb")(?!\d)"
            )
            if phones
            else None
        )

    def __call__(self, text: bytes) -> bool:
        if self._tokens is not None and self._tokens.search(text):
            return True
        if self._phones is not None:
            return bool(self._phones.search(re.sub(rb"[ \t()+\-]", b"", text)))
        return False


def uncovered_tables(
    tables: dict[str, str], rules: dict[str, Rule], exempt: frozenset[str]
) -> list[str]:
    return sorted(
        qualified
        for name, qualified in tables.items()
        if name not in rules and name not in exempt and name != QUARANTINE_TABLE
    )


def erase_rows(
    conn: duckdb.DuckDBPyConnection,
    footprint: Footprint,
    rules: dict[str, Rule],
    exempt: frozenset[str],
) -> dict[str, int]:
    """Delete the person's rows from every table `rules` names; returns rows per table.

    Rows taken from `raw` move from their batch's rows_loaded to rows_erased, so each batch
    still accounts for every row it read. Runs in the caller's transaction.
    """
    tables = qualified_tables(conn)
    unknown = uncovered_tables(tables, rules, exempt)
    if unknown:
        raise UncoveredTables(
            "the erasure map (crm_warehouse/erasure/rules.py) does not cover "
            + ", ".join(unknown)
            + ": say which columns tie their rows to a person, or that they hold none"
        )
    conn.register("_erasure_keys", footprint.as_arrow())
    removed: dict[str, int] = {}
    try:
        for name, qualified in sorted(tables.items()):
            rule = rules.get(name)
            if rule is None:
                continue
            predicate = " or ".join(
                f"cast({expression} as varchar) in "
                f"(select value from _erasure_keys where kind = '{kind}')"
                for expression, kind in rule
            )
            if qualified.startswith("raw.") and name in _RAW_SOURCES:
                per_batch = conn.execute(
                    f"select _batch_id, count(*) from {qualified} where {predicate} group by 1"
                ).fetchall()
                for batch, count in per_batch:
                    conn.execute(
                        "update meta.batches set rows_loaded = rows_loaded - ?, "
                        "rows_erased = coalesce(rows_erased, 0) + ? "
                        "where batch_id = ? and source = ?",
                        [count, count, batch, _RAW_SOURCES[name]],
                    )
                count = sum(count for _, count in per_batch)
            else:
                count = conn.execute(
                    f"select count(*) from {qualified} where {predicate}"
                ).fetchall()[0][0]
            if count:
                conn.execute(f"delete from {qualified} where {predicate}")
                removed[qualified] = int(count)
    finally:
        conn.unregister("_erasure_keys")
    return removed


def erase_quarantined(
    conn: duckdb.DuckDBPyConnection, footprint: Footprint, matcher: TokenMatcher
) -> int:
    """Delete quarantined rows that are the person's by key or carry their identifiers."""
    qualified = qualified_tables(conn).get(QUARANTINE_TABLE)
    if qualified is None:
        return 0
    keys = {kind: set(footprint.values(kind)) for kind in QUARANTINE_KEY_KINDS.values()}
    doomed: dict[tuple[str, str], list[int]] = {}
    for rowid, source, batch_id, record_key, payload in conn.execute(
        f"select rowid, source, batch_id, record_key, raw_payload from {qualified}"
    ).fetchall():
        kind = QUARANTINE_KEY_KINDS.get(source)
        first_key = (record_key or "").split("|")[0]
        if (kind is not None and first_key in keys[kind]) or (
            payload and matcher(payload.encode("utf-8", errors="replace"))
        ):
            doomed.setdefault((batch_id, source), []).append(rowid)
    for (batch_id, source), rowids in doomed.items():
        conn.execute(f"delete from {qualified} where list_contains(?, rowid)", [rowids])
        conn.execute(
            "update meta.batches set rows_quarantined = rows_quarantined - ?, "
            "rows_erased = coalesce(rows_erased, 0) + ? where batch_id = ? and source = ?",
            [len(rowids), len(rowids), batch_id, source],
        )
    return sum(len(rowids) for rowids in doomed.values())


def rewrite_database(path: Path, storage_version: str | None = None) -> None:
    """Copy the live contents of a DuckDB file into a new file and rename it over the old.

    The new file keeps the old one's mode and group (serving snapshots rely on both), and is
    written in `storage_version` if given (serving snapshots are read by older DuckDBs)."""
    fresh = path.with_name(f".{path.name}.erasing")
    fresh.unlink(missing_ok=True)
    status = path.stat()
    conn = duckdb.connect()
    try:
        conn.execute(f"attach '{path.as_posix()}' as old_copy (read_only)")
        version = f" (storage_version '{storage_version}')" if storage_version else ""
        conn.execute(f"attach '{fresh.as_posix()}' as new_copy{version}")
        conn.execute("copy from database old_copy to new_copy")
        conn.execute("detach old_copy")
        conn.execute("detach new_copy")
    finally:
        conn.close()
    os.chmod(fresh, status.st_mode & 0o7777)
    if fresh.stat().st_gid != status.st_gid:
        os.chown(fresh, -1, status.st_gid)
    os.replace(fresh, path)
    path.with_name(path.name + ".wal").unlink(missing_ok=True)


def without_person(data: bytes, matcher: TokenMatcher, *, csv_records: bool) -> bytes:
    """`data` without the lines (CSV records, which may span lines) that carry the person."""
    lines = data.splitlines(keepends=True)
    kept: list[bytes] = []
    record: list[bytes] = []
    quotes = 0
    for line in lines:
        record.append(line)
        quotes += line.count(b'"')
        if csv_records and quotes % 2:
            continue  # a quoted field runs on to the next line
        text = b"".join(record)
        if not matcher(text):
            kept.append(text)
        record, quotes = [], 0
    if record:
        text = b"".join(record)
        if not matcher(text):
            kept.append(text)
    return b"".join(kept)


def write_atomically(path: Path, data: bytes) -> None:
    fresh = path.with_name(f".{path.name}.erasing")
    fresh.write_bytes(data)
    os.chmod(fresh, path.stat().st_mode & 0o7777)
    os.replace(fresh, path)


def erase_from_sales_database(
    url: str, tables: dict[str, str], footprint: Footprint
) -> dict[str, int]:
    """Delete the person's customers, orders and order lines from a sales database."""
    customers = footprint.values("sales_customer")
    orders = footprint.values("sales_order")
    engine = sa.create_engine(url)
    removed: dict[str, int] = {}
    try:
        metadata = sa.MetaData()
        with engine.begin() as source:
            reflected = {
                logical: sa.Table(name, metadata, autoload_with=source)
                for logical, name in tables.items()
            }
            statements = {
                "order_lines": reflected["order_lines"]
                .delete()
                .where(sa.cast(reflected["order_lines"].c.order_id, sa.String).in_(orders)),
                "orders": reflected["orders"]
                .delete()
                .where(
                    sa.cast(reflected["orders"].c.id, sa.String).in_(orders)
                    | sa.cast(reflected["orders"].c.customer_id, sa.String).in_(customers)
                ),
                "customers": reflected["customers"]
                .delete()
                .where(sa.cast(reflected["customers"].c.id, sa.String).in_(customers)),
            }
            for logical, statement in statements.items():
                removed[tables[logical]] = source.execute(statement).rowcount
        if engine.dialect.name == "sqlite":
            # SQLite keeps deleted rows in free pages until VACUUM rewrites the file.
            with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as source:
                source.execute(sa.text("vacuum"))
    finally:
        engine.dispose()
    return removed
