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
import numpy as np
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
    Each file set is read by one DuckDB scan over all its new files, not file by file.
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
        ledger = _Ledger.read(conn, contract.source)
        create_parsed_table(conn, contract)
        rejected: list[Rejected] = []
        for fileset in filesets:
            pieces = [
                piece
                for path in sorted(fileset.directory.glob(fileset.pattern))
                if (piece := ledger.slice_to_load(path)) is not None
            ]
            if not pieces:
                continue
            if fileset.format == "csv":
                rejected += _read_csv_files(conn, fileset, pieces, scratch_dir)
            else:
                rejected += _read_jsonl_files(conn, fileset, pieces)
            counts.files += [piece.path.as_posix() for piece in pieces]
            conn.executemany(
                "insert into meta.loaded_files values (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    [
                        contract.source,
                        piece.path.as_posix(),
                        piece.content_hash,
                        piece.start_byte,
                        len(piece.data),
                        piece.data.count(b"\n"),
                        0,
                        current.batch_id,
                        loaded_at,
                    ]
                    for piece in pieces
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


@dataclass
class _Ledger:
    """What was loaded of a source before: content hashes, and each path's latest load."""

    hashes: set[str]
    latest: dict[str, tuple[str, int, int]]  # path -> (content hash, end byte, line count)

    @classmethod
    def read(cls, conn: duckdb.DuckDBPyConnection, source: str) -> _Ledger:
        rows = conn.execute(
            "select path, content_hash, end_byte, line_count from meta.loaded_files "
            "where source = ? order by loaded_at, end_byte",
            [source],
        ).fetchall()
        return cls({row[1] for row in rows}, {row[0]: (row[1], row[2], row[3]) for row in rows})

    def slice_to_load(self, path: Path) -> _Slice | None:
        data = path.read_bytes()
        digest = hashlib.sha256(data).hexdigest()
        if not data or digest in self.hashes:
            return None
        previous = self.latest.get(path.as_posix())
        if previous is not None:
            old_hash, old_end, old_lines = previous
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


def _read_jsonl_files(
    conn: duckdb.DuckDBPyConnection, fileset: FileSet, pieces: list[_Slice]
) -> list[Rejected]:
    """Lines of all pieces go to DuckDB as one Arrow table; DuckDB parses and extracts."""
    contract = fileset.contract
    rejected: list[Rejected] = []
    names: list[str] = []
    file_indexes, positions, texts = [], [], []
    for index, piece in enumerate(pieces):
        name = piece.path.as_posix()
        names.append(name)
        body = piece.data[piece.start_byte :]
        lines, bad = _decode_lines(body, fileset.encoding)
        if bad:
            raw_lines = body.split(b"\n")
            for bad_index in bad:
                rejected.append(
                    Rejected(
                        name,
                        piece.first_line + bad_index,
                        "undecodable_bytes",
                        f"line is not valid {fileset.encoding} text",
                        _payload(raw_lines[bad_index]),
                    )
                )
        file_indexes.append(np.full(len(lines), index, dtype=np.int32))
        positions.append(np.arange(piece.first_line, piece.first_line + len(lines)))
        texts += lines
    conn.register(
        "_jsonl_lines",
        pa.table(
            {
                "_file_index": pa.array(np.concatenate(file_indexes)),
                "_position": pa.array(np.concatenate(positions)),
                "line": pa.array(texts, pa.string()),
            }
        ),
    )
    conn.register(
        "_jsonl_files",
        pa.table(
            {
                "_file_index": pa.array(range(len(names)), pa.int32()),
                "_file": pa.array(names, pa.string()),
            }
        ),
    )
    # Empty lines (and undecodable ones, blanked above) are not rows.
    conn.execute("""
        create or replace temp table _jsonl_rows as
        select _jsonl_files._file, _position, rtrim(line, chr(13)) as line
        from _jsonl_lines join _jsonl_files using (_file_index)
        where trim(line) <> ''
    """)
    conn.unregister("_jsonl_lines")
    conn.unregister("_jsonl_files")
    paths = [
        (column.name, "$." + '"' + accepted.replace('"', '\\"') + '"')
        for column in contract.columns
        for accepted in column.accepted_names
    ]
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
        select _file, _position, line, json_valid(line) as valid
        from _jsonl_rows
        where not json_valid(line) or json_type(line) <> 'OBJECT'
    """).fetchall()
    for name, position, line, valid in malformed:
        reason = "line is JSON but not an object" if valid else "line is not valid JSON"
        rejected.append(Rejected(name, position, "malformed_json", reason, line))
    conn.execute(f"""
        insert into {PARSED}
        select _file, _position, line, {extracted}
        from (
            select _file, _position, line, json_extract_string(line, {path_list}) as _values
            from _jsonl_rows
            where json_valid(line) and json_type(line) = 'OBJECT'
        )
    """)
    conn.execute("drop table _jsonl_rows")
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


@dataclass(frozen=True)
class _Readable:
    """A piece as DuckDB will read it: the file itself, or a UTF-8 copy of its new lines."""

    piece: _Slice
    path: Path
    offset: int  # file line = DuckDB line + offset
    undecodable: frozenset[int]  # DuckDB lines that held bytes invalid in the source encoding


def _readable(
    fileset: FileSet, piece: _Slice, header_end: int, header: str, scratch_dir: Path
) -> _Readable:
    is_utf8 = _is_utf8(fileset.encoding)
    data = piece.data
    if is_utf8 and piece.start_byte == 0:
        return _Readable(piece, piece.path, 0, frozenset())
    body = data[header_end:] if piece.start_byte == 0 else data[piece.start_byte :]
    bad_lines: list[int] = []
    if is_utf8:
        converted = data[:header_end] + body
    else:
        lines, bad_lines = _decode_lines(body, fileset.encoding)
        for index in bad_lines:
            lines[index] = ""
        converted = header.encode("utf-8") + "\n".join(lines).encode("utf-8")
        if bad_lines:
            converted = _mark_invalid(converted, bad_lines, body.split(b"\n"))
    name = hashlib.sha1(f"{piece.path}:{piece.start_byte}".encode()).hexdigest()
    copy = scratch_dir / f"{name}.csv"
    copy.write_bytes(converted)
    # DuckDB's line 1 is the header; its line 2 is the piece's first line.
    offset = piece.first_line - 2 if piece.start_byte else 0
    return _Readable(piece, copy, offset, frozenset(index + 2 for index in bad_lines))


def _is_utf8(encoding: str) -> bool:
    return encoding.lower().replace("_", "-") in ("utf-8", "utf8", "utf-8-sig")


def _read_csv_files(
    conn: duckdb.DuckDBPyConnection, fileset: FileSet, pieces: list[_Slice], scratch_dir: Path
) -> list[Rejected]:
    """One DuckDB scan per header layout over all the pieces that share it."""
    groups: dict[tuple[str, ...], list[_Readable]] = {}
    for piece in pieces:
        name = piece.path.as_posix()
        header_end = piece.data.find(b"\n") + 1 or len(piece.data)
        try:
            header = piece.data[:header_end].decode(
                "utf-8-sig" if _is_utf8(fileset.encoding) else fileset.encoding
            )
        except UnicodeDecodeError:
            raise SourceContractError(
                f"{name}: line 1: the header is not valid {fileset.encoding} text"
            ) from None
        columns = tuple(_header_columns(header.rstrip("\r\n"), fileset.contract, name))
        groups.setdefault(columns, []).append(
            _readable(fileset, piece, header_end, header, scratch_dir)
        )
    rejected: list[Rejected] = []
    for columns, readables in groups.items():
        rejected += _scan_csv_group(conn, fileset, list(columns), readables)
    return rejected


def _scan_csv_group(
    conn: duckdb.DuckDBPyConnection,
    fileset: FileSet,
    columns: list[str],
    readables: list[_Readable],
) -> list[Rejected]:
    contract = fileset.contract
    spec = ", ".join(f"{literal(c)}: 'VARCHAR'" for c in columns)
    paths = "[" + ", ".join(literal(r.path.as_posix()) for r in readables) + "]"
    conn.execute(f"""
        create or replace temp table _csv_rows as
        select row_number() over () as _scan_order, *
        from read_csv({paths}, header = true, auto_detect = false,
                      columns = {{{spec}}}, delim = ',', quote = '"', escape = '"',
                      filename = '_readable', store_rejects = true,
                      rejects_table = '_csv_errors', rejects_scan = '_csv_scans')
    """)
    conn.register(
        "_csv_files",
        pa.table(
            {
                "_readable": [r.path.as_posix() for r in readables],
                "_file": [r.piece.path.as_posix() for r in readables],
                "_offset": pa.array([r.offset for r in readables], pa.int64()),
            }
        ),
    )
    conn.execute("""
        create or replace temp table _csv_error_lines as
        select scans.file_path as _readable, errors.line,
               min(errors.error_type) as error_type, min(errors.error_message) as message,
               min(errors.csv_line) as csv_line
        from _csv_errors as errors
        join _csv_scans as scans using (scan_id, file_id)
        group by all
    """)
    by_readable = {r.path.as_posix(): r for r in readables}
    rejected = []
    for readable_path, line, error_type, message, csv_line_text in conn.execute(
        "select * from _csv_error_lines order by all"
    ).fetchall():
        readable = by_readable[readable_path]
        position = line + readable.offset
        name = readable.piece.path.as_posix()
        code = _READER_ERRORS.get(error_type, "malformed_csv")
        if error_type == "INVALID ENCODING" or line in readable.undecodable:
            code = "undecodable_bytes"
            reason = f"line is not valid {fileset.encoding} text"
            payload = _payload(readable.piece.data.split(b"\n")[position - 1])
        else:
            reason = f"{error_type.lower()}: {message}"
            payload = csv_line_text
        rejected.append(Rejected(name, position, code, reason, payload))
    selected = ", ".join(
        f"_csv_rows.{quote_identifier(c.name)}"
        if c.name in columns
        else f"null as {quote_identifier(c.name)}"
        for c in contract.columns
    )
    # Good rows keep their order within a file. In a file without errors row n is on line
    # n + 1; in one with errors, row n is on the n-th line that no error claimed.
    conn.execute(f"""
        insert into {PARSED}
        with file_start as (
            select _readable, min(_scan_order) as first_scan_order, count(*) as good_rows
            from _csv_rows group by all
        ),
        error_count as (
            select _readable, count(*) as error_rows from _csv_error_lines group by all
        ),
        all_lines as (
            select
                file_start._readable,
                unnest(range(2, file_start.good_rows + error_count.error_rows + 2)) as line
            from file_start
            join error_count using (_readable)
        ),
        free_lines as (
            select
                _readable,
                line,
                row_number() over (partition by _readable order by line) as ordinal
            from all_lines
            anti join _csv_error_lines using (_readable, line)
        ),
        ordered_rows as (
            select
                _csv_rows.*,
                _scan_order - file_start.first_scan_order + 1 as ordinal
            from _csv_rows
            join file_start using (_readable)
        )
        select
            _csv_files._file,
            coalesce(free_lines.line, _csv_rows.ordinal + 1) + _csv_files._offset,
            null,
            {selected}
        from ordered_rows as _csv_rows
        left join free_lines using (_readable, ordinal)
        join _csv_files using (_readable)
    """)
    conn.unregister("_csv_files")
    for table in ("_csv_rows", "_csv_errors", "_csv_scans", "_csv_error_lines"):
        conn.execute(f"drop table {table}")
    return rejected


def _mark_invalid(converted: bytes, bad_lines: list[int], raw_body: list[bytes]) -> bytes:
    """Replace the placeholder of each undecodable line with bytes no UTF-8 reader accepts."""
    header, _, body = converted.partition(b"\n")
    lines = body.split(b"\n")
    for index in bad_lines:
        lines[index] = b"\xff" + raw_body[index].replace(b"\r", b"")
    return header + b"\n" + b"\n".join(lines)
