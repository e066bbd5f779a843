"""From parsed text rows to typed `raw` rows and reasoned `quarantine` rows, in SQL.

Every loader (files, the sales database) first lands what it read in a temp table `_parsed`
(`_file`, `_position`, `_payload` and each contract column as text); `write_parsed` decides the
fate of every row there, and counts it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import duckdb
import pyarrow as pa

from crm_warehouse.erasure.blocklist import Blocklist
from crm_warehouse.ingest.batches import QUARANTINE_TABLE, Batch
from crm_warehouse.ingest.contracts import Reference, SourceContract
from crm_warehouse.ingest.validation import (
    key_expression,
    literal,
    quote_identifier,
    row_problem_expression,
    typed_column,
    typed_expression,
)

PARSED = "_parsed"


@dataclass(frozen=True)
class Rejected:
    """A row the reader itself could not read (bad bytes, bad JSON, wrong field count)."""

    file: str
    position: int | None
    code: str
    reason: str
    payload: str


def create_parsed_table(conn: duckdb.DuckDBPyConnection, contract: SourceContract) -> None:
    columns = ", ".join(f"{quote_identifier(c.name)} varchar" for c in contract.columns)
    conn.execute(
        f"create or replace temp table {PARSED} "
        f"(_file varchar, _position bigint, _payload varchar, {columns})"
    )


def quarantine_rejected(
    conn: duckdb.DuckDBPyConnection,
    batch: Batch,
    source: str,
    rejected: list[Rejected],
    quarantined_at: datetime,
    blocklist: Blocklist,
) -> None:
    counts = batch.source(source)
    if blocklist:
        kept = [r for r in rejected if not blocklist.mentioned_in(r.payload)]
        counts.rows_in += len(rejected) - len(kept)
        counts.rows_erased += len(rejected) - len(kept)
        rejected = kept
    if not rejected:
        return
    # One Arrow insert: DuckDB's executemany costs about a millisecond a row.
    conn.register(
        "_rejected",
        pa.table(
            {
                "file": pa.array([r.file for r in rejected], pa.string()),
                "position": pa.array([r.position for r in rejected], pa.int64()),
                "code": pa.array([r.code for r in rejected], pa.string()),
                "reason": pa.array([r.reason for r in rejected], pa.string()),
                "payload": pa.array([r.payload for r in rejected], pa.string()),
            }
        ),
    )
    conn.execute(
        f"insert into {QUARANTINE_TABLE} "
        "select $source, file, position, null, null, null, code, reason, payload, $batch, $at "
        "from _rejected",
        {"source": source, "batch": batch.batch_id, "at": quarantined_at},
    )
    conn.unregister("_rejected")
    counts.rows_in += len(rejected)
    counts.rows_quarantined += len(rejected)
    for r in rejected:
        counts.by_reason[r.code] += 1


def write_parsed(
    conn: duckdb.DuckDBPyConnection,
    batch: Batch,
    contract: SourceContract,
    timezone: str,
    local_now: datetime,
    loaded_at: datetime,
    blocklist: Blocklist,
) -> None:
    """Validate `_parsed`: good rows into raw (replacing older versions), the rest quarantined.

    Rows of erased people (on the blocklist) are dropped first, and only counted. One pass
    types every column once and names each row's first problem; duplicates, keys already loaded
    and unknown references, which are rare, are then flagged by updates that touch only the
    rows concerned.
    """
    typed = {c.name: typed_expression(c, timezone) for c in contract.columns}
    # Each typed value is computed once, into a column beside its text, and read from there.
    stored = {
        c.name: quote_identifier(c.name) if c.type == "text" else typed_column(c.name)
        for c in contract.columns
    }
    typed_values = "".join(
        f", {typed[c.name]} as {typed_column(c.name)}" for c in contract.columns if c.type != "text"
    )
    conn.execute(f"""
        create or replace temp table _checked as
        select *, {row_problem_expression(contract, local_now)} as _problem
        from (select *{typed_values} from {PARSED})
    """)
    erased = blocklist.drop_blocked_rows(conn, "_checked", contract.personal_keys)
    counts = batch.source(contract.source)
    counts.rows_in += erased
    counts.rows_erased += erased
    _flag_duplicates(conn, contract, stored)
    for reference in contract.references:
        _flag_unknown_reference(conn, reference, stored[reference.column])
    _write_checked(conn, batch, contract, stored, loaded_at)


def _flag_duplicates(
    conn: duckdb.DuckDBPyConnection, contract: SourceContract, stored: dict[str, str]
) -> None:
    key_label = "/".join(c for c in contract.key if c != contract.version_column)
    key_text = key_expression(contract, "_checked")
    keys = [stored[c] for c in contract.key]
    repeated_keys_bare = ", ".join(f"{key} as _key_{i}" for i, key in enumerate(keys))
    key_list = ", ".join(keys)
    key_tuple = ", ".join(keys)
    match = " and ".join(f"repeated._key_{i} = _checked.{key}" for i, key in enumerate(keys))
    # Keys seen more than once are rare: find them with a plain count, and only for them
    # where each first appears.
    conn.execute(f"""
        update _checked
        set _problem = struct_pack(
            code := 'duplicate_id',
            field := {literal(key_label)},
            reason := 'duplicate {key_label} ' || {key_text} || ': first seen in '
                || repeated._first.file || ' at position ' || repeated._first.position
        )
        from (
            select {repeated_keys_bare},
                   min(struct_pack(file := _file, position := _position)) as _first
            from _checked
            where _problem is null
              and ({key_tuple}) in (
                  select ({key_list}) from _checked where _problem is null
                  group by all having count(*) > 1
              )
            group by all
        ) as repeated
        where _checked._problem is null and {match}
          and (_checked._file <> repeated._first.file
               or _checked._position <> repeated._first.position)
    """)
    if contract.key_unique_across_loads:
        loaded = " and ".join(
            f"loaded.{quote_identifier(c)} = _checked.{stored[c]}" for c in contract.key
        )
        conn.execute(f"""
            update _checked
            set _problem = struct_pack(
                code := 'duplicate_id',
                field := {literal(key_label)},
                reason := 'duplicate {key_label} ' || {key_text} || ': already loaded'
            )
            where _problem is null
              and exists (select 1 from raw.{contract.table} as loaded where {loaded})
        """)


def _flag_unknown_reference(
    conn: duckdb.DuckDBPyConnection, reference: Reference, value: str
) -> None:
    value = f"_checked.{value}"
    conn.execute(f"""
        update _checked
        set _problem = struct_pack(
            code := 'unknown_reference',
            field := {literal(reference.column)},
            reason := '{reference.column} ' || cast({value} as varchar)
                || ' is not a known {reference.table} {reference.key}'
        )
        where _problem is null
          and {value} is not null
          and not exists (
              select 1 from raw.{reference.table} as referenced
              where referenced.{quote_identifier(reference.key)} = {value}
          )
          and not exists (
              select 1 from {QUARANTINE_TABLE} as held
              where held.source = {literal(reference.source)}
                and held.record_key = cast({value} as varchar)
          )
    """)


def _write_checked(
    conn: duckdb.DuckDBPyConnection,
    batch: Batch,
    contract: SourceContract,
    stored: dict[str, str],
    loaded_at: datetime,
) -> None:
    names = [c.name for c in contract.columns]
    column_list = ", ".join(quote_identifier(n) for n in names)
    if contract.upsert_key:
        match = " and ".join(
            f"loaded.{quote_identifier(c)} = incoming.{quote_identifier(c)}"
            for c in contract.upsert_key
        )
        incoming = ", ".join(f"{stored[c]} as {quote_identifier(c)}" for c in contract.upsert_key)
        conn.execute(f"""
            delete from raw.{contract.table} as loaded
            where exists (
                select 1 from (select {incoming} from _checked where _problem is null) as incoming
                where {match}
            )""")
    conn.execute(f"""
        insert into raw.{contract.table} ({column_list}, _source_file, _source_position,
                                          _batch_id, _loaded_at)
        select {", ".join(stored[n] for n in names)}, _file, _position,
               {literal(batch.batch_id)}, {literal(str(loaded_at))}
        from _checked where _problem is null
    """)
    key_text = key_expression(contract)
    version = quote_identifier(contract.version_column) if contract.version_column else "null"
    payload_struct = ", ".join(f"{quote_identifier(n)} := {quote_identifier(n)}" for n in names)
    conn.execute(f"""
        insert into {QUARANTINE_TABLE}
        select {literal(contract.source)}, _file, _position, {key_text}, {version},
               _problem.field, _problem.code, _problem.reason,
               coalesce(_payload, cast(to_json(struct_pack({payload_struct})) as varchar)),
               {literal(batch.batch_id)}, {literal(str(loaded_at))}
        from _checked where _problem is not null
    """)
    outcome = conn.execute("select _problem.code, count(*) from _checked group by 1").fetchall()
    counts = batch.source(contract.source)
    for code, number in outcome:
        counts.rows_in += number
        if code is None:
            counts.rows_loaded += number
        else:
            counts.rows_quarantined += number
            counts.by_reason[code] += number
    conn.execute("drop table _checked")
