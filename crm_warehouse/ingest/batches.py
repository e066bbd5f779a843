"""Batches: all-or-nothing loads that account for every row they read.

A batch is one transaction. It commits only if, for each source in it, rows in = rows loaded +
rows quarantined + rows erased (rows of people on the erasure blocklist); an exception
anywhere rolls the whole batch back, ledger included.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime

import duckdb

from crm_warehouse.ingest.contracts import ALL_CONTRACTS, SourceContract
from crm_warehouse.ingest.validation import SQL_TYPES, quote_identifier

QUARANTINE_TABLE = "quarantine.rejected_rows"


class ReconciliationError(RuntimeError):
    """Rows were read that were neither loaded nor quarantined: the batch is refused."""


@dataclass
class SourceCounts:
    rows_in: int = 0
    rows_loaded: int = 0
    rows_quarantined: int = 0
    rows_erased: int = 0  # rows of erased people, dropped on arrival
    by_reason: Counter[str] = field(default_factory=Counter)
    files: list[str] = field(default_factory=list)

    def as_metadata(self) -> dict[str, object]:
        return {
            "rows_in": self.rows_in,
            "rows_loaded": self.rows_loaded,
            "rows_quarantined": self.rows_quarantined,
            "rows_erased": self.rows_erased,
            "quarantined_by_reason": dict(sorted(self.by_reason.items())),
            "files_loaded": len(self.files),
        }


@dataclass
class Batch:
    batch_id: str
    started_at: datetime
    counts: dict[str, SourceCounts] = field(default_factory=dict)

    def source(self, name: str) -> SourceCounts:
        return self.counts.setdefault(name, SourceCounts())


def ensure_schema(conn: duckdb.DuckDBPyConnection) -> None:
    """Create the raw, quarantine and meta tables if this warehouse is new."""
    for schema in ("raw", "quarantine", "meta"):
        conn.execute(f"create schema if not exists {schema}")
    for contract in ALL_CONTRACTS:
        conn.execute(raw_table_ddl(contract))
    conn.execute(f"""
        create table if not exists {QUARANTINE_TABLE} (
            source varchar not null,
            source_file varchar,
            position bigint,
            record_key varchar,
            record_version varchar,
            field varchar,
            reason_code varchar not null,
            reason varchar not null,
            raw_payload varchar,
            batch_id varchar not null,
            quarantined_at timestamp not null
        )""")
    conn.execute("""
        create table if not exists meta.batches (
            batch_id varchar not null,
            source varchar not null,
            started_at timestamp not null,
            finished_at timestamp not null,
            rows_in bigint not null,
            rows_loaded bigint not null,
            rows_quarantined bigint not null,
            files varchar[],
            primary key (batch_id, source)
        )""")
    # Rows of erased people: dropped on arrival, or loaded and erased later (then moved out
    # of rows_loaded or rows_quarantined), so rows in = loaded + quarantined + erased holds.
    conn.execute("alter table meta.batches add column if not exists rows_erased bigint default 0")
    conn.execute("""
        create table if not exists meta.loaded_files (
            source varchar not null,
            path varchar not null,
            content_hash varchar not null,
            start_byte bigint not null,
            end_byte bigint not null,
            line_count bigint not null,
            rows_in bigint not null,
            batch_id varchar not null,
            loaded_at timestamp not null
        )""")
    # Each loaded file's size and modification time: a file with both unchanged is not read.
    for column in ("file_size", "modified_ns"):
        conn.execute(f"alter table meta.loaded_files add column if not exists {column} bigint")
    conn.execute("""
        create table if not exists meta.watermarks (
            source varchar primary key,
            watermark varchar not null,
            batch_id varchar not null,
            updated_at timestamp not null
        )""")


# Where each raw row came from, after the contract's own columns.
RAW_LINEAGE_COLUMNS = ("_source_file", "_source_position", "_batch_id", "_loaded_at")


def raw_table_ddl(contract: SourceContract) -> str:
    columns = ",\n    ".join(
        f"{quote_identifier(c.name)} {SQL_TYPES[c.type]}" for c in contract.columns
    )
    return f"""create table if not exists raw.{contract.table} (
    {columns},
    _source_file varchar not null,
    _source_position bigint,
    _batch_id varchar not null,
    _loaded_at timestamp not null
)"""


@contextmanager
def batch(conn: duckdb.DuckDBPyConnection) -> Iterator[Batch]:
    """One all-or-nothing load; records a `meta.batches` row per source that read any rows."""
    ensure_schema(conn)
    current = Batch(batch_id=uuid.uuid4().hex[:16], started_at=_utc_now())
    conn.execute("begin transaction")
    try:
        yield current
        finished = _utc_now()
        for source, counts in current.counts.items():
            if counts.rows_in != counts.rows_loaded + counts.rows_quarantined + counts.rows_erased:
                raise ReconciliationError(
                    f"{source}: {counts.rows_in} rows in but {counts.rows_loaded} loaded, "
                    f"{counts.rows_quarantined} quarantined and {counts.rows_erased} erased"
                )
            if counts.rows_in == 0 and not counts.files:
                continue
            conn.execute(
                "insert into meta.batches (batch_id, source, started_at, finished_at, rows_in, "
                "rows_loaded, rows_quarantined, files, rows_erased) "
                "values (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    current.batch_id,
                    source,
                    current.started_at,
                    finished,
                    counts.rows_in,
                    counts.rows_loaded,
                    counts.rows_quarantined,
                    counts.files,
                    counts.rows_erased,
                ],
            )
        conn.execute("commit")
    except BaseException:
        conn.execute("rollback")
        raise


def _utc_now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)
