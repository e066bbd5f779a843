"""From parsed text rows to typed `raw` rows and reasoned `quarantine` rows, in SQL.

Every loader (files, the sales database) first lands what it read in a temp table `_parsed`
(`_file`, `_position`, `_payload` and each contract column as text); `write_parsed` decides the
fate of every row there, and counts it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import duckdb

from crm_warehouse.ingest.batches import QUARANTINE_TABLE, Batch
from crm_warehouse.ingest.contracts import SourceContract
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
) -> None:
    if not rejected:
        return
    conn.executemany(
        f"insert into {QUARANTINE_TABLE} values (?, ?, ?, null, null, null, ?, ?, ?, ?, ?)",
        [
            [
                source,
                r.file,
                r.position,
                r.code,
                r.reason,
                r.payload,
                batch.batch_id,
                quarantined_at,
            ]
            for r in rejected
        ],
    )
    counts = batch.source(source)
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
) -> None:
    """Validate `_parsed`: good rows into raw (replacing older versions), the rest quarantined."""
    typed = {c.name: typed_expression(c, timezone) for c in contract.columns}
    # Each typed value is computed once, into a column beside its text, and read from there.
    stored = {
        c.name: quote_identifier(c.name) if c.type == "text" else typed_column(c.name)
        for c in contract.columns
    }
    outer = {name: f"ranked.{column}" for name, column in stored.items()}
    key_typed = [stored[c] for c in contract.key]
    key_text = key_expression(contract)
    problem = row_problem_expression(contract, local_now)
    typed_values = "".join(
        f", {typed[c.name]} as {typed_column(c.name)}" for c in contract.columns if c.type != "text"
    )

    key_label = "/".join(c for c in contract.key if c != contract.version_column)
    partition = ", ".join(key_typed)
    duplicate_reason = (
        f"'duplicate {key_label} ' || {key_text} || ': first seen in ' || _first_file || "
        f"' at position ' || _first_position"
    )
    already_loaded = "false"
    if contract.key_unique_across_loads:
        match = " and ".join(f"loaded.{quote_identifier(c)} = {outer[c]}" for c in contract.key)
        already_loaded = f"exists (select 1 from raw.{contract.table} as loaded where {match})"
    reference_rules = []
    for reference in contract.references:
        value = outer[reference.column]
        reference_rules.append(
            f"when {value} is not null and not exists (select 1 from raw.{reference.table} "
            f"as referenced where referenced.{quote_identifier(reference.key)} = {value}) "
            f"and not exists (select 1 from {QUARANTINE_TABLE} as held "
            f"where held.source = {literal(reference.source)} "
            f"and held.record_key = cast({value} as varchar)) "
            f"then struct_pack(code := 'unknown_reference', field := "
            f"{literal(reference.column)}, reason := '{reference.column} ' || "
            f"cast({value} as varchar) || ' is not a known {reference.table} "
            f"{reference.key}')"
        )
    references = "\n            ".join(reference_rules)
    conn.execute(f"""
        create or replace temp table _checked as
        with typed as (
            select *{typed_values} from {PARSED}
        ),
        row_checked as (
            select *, {problem} as _problem from typed
        ),
        ranked as (
            select
                *,
                row_number() over (
                    partition by _problem is null, {partition} order by _file, _position
                ) as _rank,
                first_value(_file) over (
                    partition by _problem is null, {partition} order by _file, _position
                ) as _first_file,
                first_value(_position) over (
                    partition by _problem is null, {partition} order by _file, _position
                ) as _first_position
            from row_checked
        )
        select * exclude (_rank, _first_file, _first_position, _problem),
            case
            when _problem is not null then _problem
            when _rank > 1 then struct_pack(code := 'duplicate_id', field := {literal(key_label)},
                reason := {duplicate_reason})
            when {already_loaded} then struct_pack(code := 'duplicate_id',
                field := {literal(key_label)},
                reason := 'duplicate {key_label} ' || {key_text} || ': already loaded')
            {references}
            end as _problem
        from ranked
    """)

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
        order by _file, _position
    """)
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
