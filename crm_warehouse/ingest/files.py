"""File sources: find new files or new tails of files, read them with DuckDB, load them.

A file whose content was loaded before (same SHA-256, under any name) is skipped. A file that
grew since its last load (its old bytes unchanged, as an append-only log grows) loads only its
new lines. A file that changed otherwise (a rewritten snapshot) loads whole, as a new version.
"""

from __future__ import annotations

import csv
import hashlib
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo

import duckdb
import pyarrow as pa

from crm_warehouse.ingest.batches import SourceCounts, batch
from crm_warehouse.ingest.contracts import SourceContract
from crm_warehouse.ingest.rows import (
    PARSED,
    Rejected,
    create_parsed_table,
    quarantine_rejected,
    write_parsed,
)
from crm_warehouse.ingest.validation import literal, quote_identifier

_READER_ERRORS = {
    "INVALID ENCODING": "undecodable_bytes",
    "MISSING COLUMNS": "wrong_column_count",
    "TOO MANY COLUMNS": "wrong_column_count",
    "UNQUOTED VALUE": "malformed_csv",
    "LINE SIZE OVER MAXIMUM": "oversize_field",
    "CAST": "unparseable_value",
}


class SourceContractError(ValueError):
    """An input file breaks its source's contract as a whole (for example a missing column)."""


@dataclass(frozen=True)
class FileSet:
    contract: SourceContract
    directory: Path
    pattern: str
    format: Literal["csv", "jsonl"]
    encoding: str = "utf-8"


@dataclass(frozen=True)
class _Slice:
    """The part of a file to load now."""

    path: Path
    data: bytes  # the whole file as read
    start_byte: int
    first_line: int  # file line number of the first line in data[start_byte:]
    content_hash: str


def load_file_sources(
    conn: duckdb.DuckDBPyConnection,
    filesets: list[FileSet],
    timezone: str,
    scratch_dir: Path,
    now: datetime | None = None,
) -> SourceCounts:
    """Load every new file (or new tail) of the file sets, all in one batch; returns the counts.

    All file sets must share one contract (e.g. the JSON-lines and CSV layouts of the forms).
    """
    contract = filesets[0].contract
    if any(fs.contract is not contract for fs in filesets):
        raise ValueError("one call loads one source: the file sets must share a contract")
    zone = ZoneInfo(timezone)
    now = now or datetime.now(zone)
    local_now = now.astimezone(zone).replace(tzinfo=None)
    loaded_at = now.astimezone(ZoneInfo("UTC")).replace(tzinfo=None)
    scratch_dir.mkdir(parents=True, exist_ok=True)
    with batch(conn) as current:
        counts = current.source(contract.source)
        create_parsed_table(conn, contract)
        rejected: list[Rejected] = []
        for fileset in filesets:
            for path in sorted(fileset.directory.glob(fileset.pattern)):
                piece = _slice_to_load(conn, contract.source, path)
                if piece is None:
                    continue
                name = path.as_posix()
                if fileset.format == "csv":
                    rejected += _read_csv(conn, fileset, piece, scratch_dir)
                else:
                    rejected += _read_jsonl(conn, fileset, piece)
                counts.files.append(name)
                conn.execute(
                    "insert into meta.loaded_files values (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    [
                        contract.source,
                        name,
                        piece.content_hash,
                        piece.start_byte,
                        len(piece.data),
                        piece.data.count(b"\n"),
                        0,
                        current.batch_id,
                        loaded_at,
                    ],
                )
        quarantine_rejected(conn, current, contract.source, rejected, loaded_at)
        write_parsed(conn, current, contract, timezone, local_now, loaded_at)
        if counts.files:
            _record_rows_per_file(conn, contract, current.batch_id)
        conn.execute(f"drop table {PARSED}")
    return counts


def _record_rows_per_file(
    conn: duckdb.DuckDBPyConnection, contract: SourceContract, batch_id: str
) -> None:
    """Fill the ledger's per-file row counts from what the batch actually wrote."""
    conn.execute(
        f"""
        update meta.loaded_files
        set rows_in = per_file.rows_in
        from (
            select file, count(*) as rows_in from (
                select _source_file as file from raw.{contract.table} where _batch_id = $batch
                union all
                select source_file from quarantine.rejected_rows
                where batch_id = $batch and source = $source
            ) group by file
        ) as per_file
        where meta.loaded_files.path = per_file.file and meta.loaded_files.batch_id = $batch
        """,
        {"batch": batch_id, "source": contract.source},
    )


def _slice_to_load(conn: duckdb.DuckDBPyConnection, source: str, path: Path) -> _Slice | None:
    data = path.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    seen = conn.execute(
        "select 1 from meta.loaded_files where source = ? and content_hash = ? limit 1",
        [source, digest],
    ).fetchall()
    if seen or not data:
        return None
    previous = conn.execute(
        "select content_hash, end_byte, line_count from meta.loaded_files "
        "where source = ? and path = ? order by loaded_at desc, end_byte desc limit 1",
        [source, path.as_posix()],
    ).fetchall()
    if previous:
        old_hash, old_end, old_lines = previous[0]
        grew = (
            len(data) > old_end
            and data[old_end - 1 : old_end] == b"\n"
            and hashlib.sha256(data[:old_end]).hexdigest() == old_hash
        )
        if grew:
            return _Slice(path, data, old_end, old_lines + 1, digest)
    return _Slice(path, data, 0, 1, digest)


def _decode_lines(data: bytes, encoding: str) -> tuple[list[str], list[int]]:
    """Decode line by line only when the whole does not decode; returns lines and the
    indexes of lines that are not valid in `encoding` (those hold the empty string)."""
    try:
        return data.decode(encoding).split("\n"), []
    except UnicodeDecodeError:
        lines, bad = [], []
        for index, raw in enumerate(data.split(b"\n")):
            try:
                lines.append(raw.decode(encoding))
            except UnicodeDecodeError:
                lines.append("")
                bad.append(index)
        return lines, bad


def _payload(raw: bytes) -> str:
    return raw.decode("utf-8", errors="backslashreplace")


def _read_jsonl(conn: duckdb.DuckDBPyConnection, fileset: FileSet, piece: _Slice) -> list[Rejected]:
    contract = fileset.contract
    name = piece.path.as_posix()
    body = piece.data[piece.start_byte :]
    lines, bad = _decode_lines(body, fileset.encoding)
    rejected = []
    raw_lines = body.split(b"\n") if bad else []
    for index in bad:
        rejected.append(
            Rejected(
                name,
                piece.first_line + index,
                "undecodable_bytes",
                f"line is not valid {fileset.encoding} text",
                _payload(raw_lines[index]),
            )
        )
    bad_set = set(bad)
    positions, texts = [], []
    for index, line in enumerate(lines):
        stripped = line.rstrip("\r")
        if index in bad_set or not stripped.strip():
            continue
        positions.append(piece.first_line + index)
        texts.append(stripped)
    conn.register(
        "_jsonl_lines",
        pa.table(
            {"_position": pa.array(positions, pa.int64()), "line": pa.array(texts, pa.string())}
        ),
    )
    paths = []
    for column in contract.columns:
        for accepted in column.accepted_names:
            paths.append((column.name, "$." + '"' + accepted.replace('"', '\\"') + '"'))
    path_list = "[" + ", ".join(literal(p) for _, p in paths) + "]"
    extracted = ", ".join(
        "coalesce("
        + ", ".join(
            f"_values[{i + 1}]" for i, (owner, _) in enumerate(paths) if owner == column.name
        )
        + f") as {quote_identifier(column.name)}"
        for column in contract.columns
    )
    malformed = conn.execute("""
        select _position, line, json_valid(line) as valid
        from _jsonl_lines
        where not json_valid(line) or json_type(line) <> 'OBJECT'
    """).fetchall()
    for position, line, valid in malformed:
        reason = "line is JSON but not an object" if valid else "line is not valid JSON"
        rejected.append(Rejected(name, position, "malformed_json", reason, line))
    conn.execute(f"""
        insert into {PARSED}
        select {literal(name)}, _position, line, {extracted}
        from (
            select _position, line, json_extract_string(line, {path_list}) as _values
            from _jsonl_lines
            where json_valid(line) and json_type(line) = 'OBJECT'
        )
    """)
    conn.unregister("_jsonl_lines")
    return rejected


def _header_columns(header: str, contract: SourceContract, file: str) -> list[str]:
    """Canonical names of the header's columns; unknown columns are kept as `_extra_N`."""
    cells = next(csv.reader([header.lstrip("\ufeff")]))
    lookup = {
        accepted.strip().lower(): column.name
        for column in contract.columns
        for accepted in column.accepted_names
    }
    names = []
    for index, cell in enumerate(cells):
        canonical = lookup.get(cell.strip().lower())
        if canonical in names:
            raise SourceContractError(f"{file}: line 1: column {cell!r} appears twice")
        names.append(canonical or f"_extra_{index}")
    missing = [c.name for c in contract.columns if c.required and c.name not in names]
    if missing:
        accepted = "; ".join(
            f"{m} (any of: {', '.join(contract.column(m).accepted_names)})" for m in missing
        )
        raise SourceContractError(
            f"{file}: line 1: the header lacks required column(s) {accepted}; header was {cells}"
        )
    return names


def _read_csv(
    conn: duckdb.DuckDBPyConnection, fileset: FileSet, piece: _Slice, scratch_dir: Path
) -> list[Rejected]:
    contract = fileset.contract
    name = piece.path.as_posix()
    data = piece.data
    header_end = data.find(b"\n") + 1 or len(data)
    is_utf8 = fileset.encoding.lower().replace("_", "-") in ("utf-8", "utf8", "utf-8-sig")
    try:
        header = data[:header_end].decode("utf-8-sig" if is_utf8 else fileset.encoding)
    except UnicodeDecodeError:
        raise SourceContractError(
            f"{name}: line 1: the header is not valid {fileset.encoding} text"
        ) from None
    columns = _header_columns(header.rstrip("\r\n"), contract, name)
    body = data[header_end:] if piece.start_byte == 0 else data[piece.start_byte :]
    bad_lines: list[int] = []
    if is_utf8 and piece.start_byte == 0:
        readable = piece.path
    else:
        if is_utf8:
            converted = data[:header_end] + body
        else:
            lines, bad_lines = _decode_lines(body, fileset.encoding)
            raw_body = body.split(b"\n")
            # An undecodable line stays in place, marked so DuckDB rejects it on its own line.
            for index in bad_lines:
                lines[index] = "\ufffd"
            converted = header.encode("utf-8") + "\n".join(lines).encode("utf-8")
            if bad_lines:
                converted = _mark_invalid(converted, bad_lines, raw_body)
        readable = scratch_dir / f"{hashlib.sha1(name.encode()).hexdigest()}.csv"
        readable.write_bytes(converted)
    # Line L of what DuckDB reads is file line L + offset (its line 1 is the header).
    offset = piece.first_line - 2 if piece.start_byte else 0
    spec = ", ".join(f"{literal(c)}: 'VARCHAR'" for c in columns)
    conn.execute(f"""
        create or replace temp table _csv_rows as
        select row_number() over () as _ordinal, *
        from read_csv({literal(readable.as_posix())}, header = true, auto_detect = false,
                      columns = {{{spec}}}, delim = ',', quote = '"', escape = '"',
                      store_rejects = true, rejects_table = '_csv_errors',
                      rejects_scan = '_csv_scans')
    """)
    errors = conn.execute("""
        select line, min(error_type), min(error_message), min(csv_line)
        from _csv_errors group by line order by line
    """).fetchall()
    rejected = []
    raw_lines = data.split(b"\n") if any(e[1] == "INVALID ENCODING" for e in errors) else []
    for line, error_type, message, csv_line_text in errors:
        position = line + offset
        code = _READER_ERRORS.get(error_type, "malformed_csv")
        if error_type == "INVALID ENCODING":
            reason = f"line is not valid {fileset.encoding} text"
            payload = _payload(raw_lines[position - 1]) if raw_lines else csv_line_text
        else:
            reason = f"{error_type.lower()}: {message}"
            payload = csv_line_text
        rejected.append(Rejected(name, position, code, reason, payload))
    ((good,),) = conn.execute("select count(*) from _csv_rows").fetchall()
    reject_lines = [line for line, *_ in errors]
    selected = ", ".join(
        quote_identifier(c.name) if c.name in columns else f"null as {quote_identifier(c.name)}"
        for c in contract.columns
    )
    # Good rows keep their order; their line numbers are the lines no error claimed.
    conn.execute(f"""
        insert into {PARSED}
        with all_lines as (
            select range as line from range(2, {good + len(reject_lines) + 2})
        ),
        free_lines as (
            select line, row_number() over (order by line) as ordinal
            from all_lines
            where line not in (select line from _csv_errors)
        )
        select {literal(name)}, free_lines.line + {offset}, null, {selected}
        from _csv_rows
        join free_lines on free_lines.ordinal = _csv_rows._ordinal
    """)
    conn.execute("drop table _csv_rows")
    conn.execute("drop table _csv_errors")
    conn.execute("drop table _csv_scans")
    return rejected


def _mark_invalid(converted: bytes, bad_lines: list[int], raw_body: list[bytes]) -> bytes:
    """Replace the placeholder of each undecodable line with bytes no UTF-8 reader accepts."""
    header, _, body = converted.partition(b"\n")
    lines = body.split(b"\n")
    for index in bad_lines:
        lines[index] = b"\xff" + raw_body[index].replace(b"\r", b"")
    return header + b"\n" + b"\n".join(lines)
