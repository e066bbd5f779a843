"""File sources: find new files or new tails of files, read them with DuckDB, load them.

A file whose content was loaded before (same SHA-256, under any name) is skipped. A file that
grew since its last load (its old bytes unchanged, as an append-only log grows) loads only its
new lines. A file that changed otherwise (a rewritten snapshot) loads whole, as a new version.
"""

from __future__ import annotations

import csv
import hashlib
import json
import re
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo

import duckdb
import pyarrow as pa

from crm_warehouse.erasure.blocklist import Blocklist
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
    # The file's size and modification time before it was read: while both stay the same,
    # later loads leave the file unread (`_Ledger.slice_to_load`).
    file_size: int
    modified_ns: int


def load_file_sources(
    conn: duckdb.DuckDBPyConnection,
    filesets: list[FileSet],
    timezone: str,
    scratch_dir: Path,
    now: datetime | None = None,
    *,
    blocklist: Blocklist,
    include: Callable[[Path], bool] | None = None,
) -> SourceCounts:
    """Load every new file (or new tail) of the file sets, all in one batch; returns the counts.

    `include`, when given, narrows the file sets to the files it accepts (a partition's days):
    the ledger still decides what of them is new, so loading a day twice loads it once.
    All file sets must share one contract (e.g. the JSON-lines and CSV layouts of the forms).
    Each file set is read by one DuckDB scan over all its new files, not file by file.
    Rows of people on the erasure `blocklist` are dropped and counted as erased.
    """
    contract = filesets[0].contract
    if any(fs.contract is not contract for fs in filesets):
        raise ValueError("one call loads one source: the file sets must share a contract")
    zone = ZoneInfo(timezone)
    now = now or datetime.now(zone)
    local_now = now.astimezone(zone).replace(tzinfo=None)
    loaded_at = now.astimezone(ZoneInfo("UTC")).replace(tzinfo=None)
    scratch_dir.mkdir(parents=True, exist_ok=True)
    # Re-encoded copies hold personal data: they live only as long as the load.
    with batch(conn) as current, tempfile.TemporaryDirectory(dir=scratch_dir) as copies:
        counts = current.source(contract.source)
        ledger = _Ledger.read(conn, contract.source)
        rejected: list[Rejected] = []
        parts: list[str] = []
        temporaries: list[str] = []  # views first: dropped in this order after the load
        for number, fileset in enumerate(filesets):
            pieces = [
                piece
                for path in sorted(fileset.directory.glob(fileset.pattern))
                if (include is None or include(path))
                and (piece := ledger.slice_to_load(path)) is not None
            ]
            if not pieces:
                continue
            reader = _read_csv_files if fileset.format == "csv" else _read_jsonl_files
            fileset_rejected, fileset_parts = reader(
                conn, fileset, pieces, Path(copies), str(number), temporaries
            )
            rejected += fileset_rejected
            parts += fileset_parts
            counts.files += [piece.path.as_posix() for piece in pieces]
            conn.executemany(
                "insert into meta.loaded_files (source, path, content_hash, start_byte, "
                "end_byte, line_count, rows_in, batch_id, loaded_at, file_size, modified_ns) "
                "values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
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
                        piece.file_size,
                        piece.modified_ns,
                    ]
                    for piece in pieces
                ],
            )
        # The rows of every file set, read through views: nothing is copied before checking.
        if parts:
            union = " union all ".join(f"select * from {part}" for part in parts)
            conn.execute(f"create or replace temp view {PARSED} as {union}")
            temporaries.insert(0, f"view {PARSED}")
        else:
            create_parsed_table(conn, contract)
            temporaries.insert(0, f"table {PARSED}")
        quarantine_rejected(conn, current, contract.source, rejected, loaded_at, blocklist)
        write_parsed(conn, current, contract, timezone, local_now, loaded_at, blocklist)
        if counts.files:
            _record_rows_per_file(conn, contract, current.batch_id)
        if ledger.unchanged:
            ledger.record_unchanged(conn, contract.source)
        for temporary in temporaries:
            conn.execute(f"drop {temporary}")
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


@dataclass(frozen=True)
class _Loaded:
    """A path's latest load: what the ledger knows of the file as it was then."""

    content_hash: str
    end_byte: int
    line_count: int
    file_size: int | None  # None: recorded before the ledger kept it, or by an erasure
    modified_ns: int | None


@dataclass
class _Ledger:
    """What was loaded of a source before: content hashes, and each path's latest load."""

    hashes: set[str]
    latest: dict[str, _Loaded]
    # Paths read again and found as loaded (touched, erased, or loaded before the ledger kept
    # sizes and times), with their size and time now: recorded, so the next run skips them.
    unchanged: list[tuple[str, str, int, int]] = field(default_factory=list)

    @classmethod
    def read(cls, conn: duckdb.DuckDBPyConnection, source: str) -> _Ledger:
        rows = conn.execute(
            "select path, content_hash, end_byte, line_count, file_size, modified_ns "
            "from meta.loaded_files where source = ? order by loaded_at, end_byte",
            [source],
        ).fetchall()
        return cls({row[1] for row in rows}, {row[0]: _Loaded(*row[1:]) for row in rows})

    def slice_to_load(self, path: Path) -> _Slice | None:
        stat = path.stat()
        previous = self.latest.get(path.as_posix())
        if (
            previous is not None
            and previous.file_size == stat.st_size
            and previous.modified_ns == stat.st_mtime_ns
        ):
            # The quick check of rsync and git: same size and modification time as when it
            # was loaded, so unchanged. Without it every run read and hashed every file
            # ever delivered (600 MB a day at 1M customers, growing with the history).
            return None
        data = path.read_bytes()
        size, modified_ns = stat.st_size, stat.st_mtime_ns
        if previous is not None:
            # A file that grew: its old part must be what was loaded, byte for byte. The
            # whole file's hash continues from the old part's, so each byte is hashed once.
            old_end = previous.end_byte
            if len(data) > old_end and data[old_end - 1 : old_end] == b"\n":
                hashed = hashlib.sha256(memoryview(data)[:old_end])
                if hashed.hexdigest() == previous.content_hash:
                    hashed.update(memoryview(data)[old_end:])
                    digest = hashed.hexdigest()
                    if digest in self.hashes:
                        return None
                    return _Slice(
                        path, data, old_end, previous.line_count + 1, digest, size, modified_ns
                    )
        digest = hashlib.sha256(data).hexdigest()
        if previous is not None and digest == previous.content_hash:
            self.unchanged.append((path.as_posix(), digest, size, modified_ns))
        if not data or digest in self.hashes:
            return None
        return _Slice(path, data, 0, 1, digest, size, modified_ns)

    def record_unchanged(self, conn: duckdb.DuckDBPyConnection, source: str) -> None:
        """Give the latest loads of the paths found unchanged their size and time now."""
        conn.executemany(
            "update meta.loaded_files set file_size = ?, modified_ns = ? "
            "where source = ? and path = ? and content_hash = ?",
            [
                [size, modified, source, path, digest]
                for path, digest, size, modified in self.unchanged
            ],
        )


def _payload(raw: bytes) -> str:
    return raw.decode("utf-8", errors="backslashreplace")


def _is_utf8(encoding: str) -> bool:
    return encoding.lower().replace("_", "-") in ("utf-8", "utf8", "utf-8-sig")


@dataclass(frozen=True)
class _Readable:
    """A piece as DuckDB will read it: the file itself, or a UTF-8 copy of its new lines."""

    piece: _Slice
    path: Path
    offset: int  # file line = DuckDB line + offset


# DuckDB's reader skips empty lines, which would shift every later line number: in a copy,
# an empty JSON line becomes this one character (not a row, dropped after the scan).
_EMPTY_LINE = b"\x02"
# Prefixed to a line whose bytes are not valid in the source encoding: no UTF-8 reader
# accepts 0xFF, so DuckDB rejects exactly that line, at its own line number.
_INVALID_MARK = b"\xff"


def _to_utf8(body: bytes, encoding: str) -> bytes:
    """`body` re-encoded as UTF-8, line for line. A line holding bytes that are not valid in
    `encoding` keeps its bytes behind `_INVALID_MARK`, so DuckDB rejects exactly that line."""
    # surrogateescape carries undecodable bytes through as lone surrogates, in C, at once.
    text = body.decode(encoding, errors="surrogateescape")
    if _UNDECODED.search(text):
        lines = text.split("\n")
        for index, line in enumerate(lines):
            if _UNDECODED.search(line):
                lines[index] = _INVALID_MARK.decode("utf-8", "surrogateescape") + line
        text = "\n".join(lines)
    return text.encode("utf-8", errors="surrogateescape")


_UNDECODED = re.compile("[\udc80-\udcff]")


def _utf8_copy(
    fileset: FileSet,
    piece: _Slice,
    prefix: bytes,
    body: bytes,
    scratch_dir: Path,
    mark_empty: bool,
) -> Path:
    """Write `prefix` + `body` as UTF-8 lines, keeping every line where it was."""
    converted = body if _is_utf8(fileset.encoding) else _to_utf8(body, fileset.encoding)
    if mark_empty:
        lines = converted.split(b"\n")
        last = len(lines) - 1
        converted = b"\n".join(
            _EMPTY_LINE if not line.strip() and index < last else line
            for index, line in enumerate(lines)
        )
    name = hashlib.sha1(f"{piece.path}:{piece.start_byte}".encode()).hexdigest()
    copy = scratch_dir / f"{name}.txt"
    copy.write_bytes(prefix + converted)
    return copy


def _has_empty_lines(body: bytes) -> bool:
    if body.startswith((b"\n", b"\r\n")) or b"\n\n" in body:
        return True
    # Only a file with carriage returns can hold a CRLF blank line; most have none.
    return b"\r" in body and b"\n\r\n" in body


@dataclass(frozen=True)
class _ScanError:
    file: str
    position: int
    error_type: str
    message: str
    line_text: str
    raw_line: bytes


def _scan(
    conn: duckdb.DuckDBPyConnection,
    readables: list[_Readable],
    columns: list[str],
    options: str,
    first_line: int,
    tag: str,
    temporaries: list[str],
) -> list[_ScanError]:
    """One DuckDB `read_csv` over all readables, seen through temp view `_scanned_<tag>`
    (`_file`, `_position`, columns…); returns the lines its reader rejected. What must be
    dropped once the batch has used the view is added to `temporaries`, in drop order.

    DuckDB gives rejected lines their line numbers but good rows none: good rows keep their
    order within a file, so in a file without errors row n is on line n + first_line - 1, and
    in one with errors it is on the n-th line no error claimed.
    """
    spec = ", ".join(f"{literal(c)}: 'VARCHAR'" for c in columns)
    paths = "[" + ", ".join(literal(r.path.as_posix()) for r in readables) + "]"
    conn.execute(f"""
        create or replace temp table _scan_rows_{tag} as
        select *
        from read_csv({paths}, auto_detect = false, columns = {{{spec}}}, {options},
                      filename = '_readable', store_rejects = true,
                      rejects_table = '_scan_errors', rejects_scan = '_scan_scans')
    """)
    conn.register(
        f"_scan_files_arrow_{tag}",
        pa.table(
            {
                "_readable": [r.path.as_posix() for r in readables],
                "_file": [r.piece.path.as_posix() for r in readables],
                "_offset": pa.array([r.offset for r in readables], pa.int64()),
            }
        ),
    )
    conn.execute(
        f"create or replace temp table _scan_files_{tag} as select * from _scan_files_arrow_{tag}"
    )
    conn.unregister(f"_scan_files_arrow_{tag}")
    conn.execute(f"""
        create or replace temp table _scan_error_lines_{tag} as
        select scans.file_path as _readable, errors.line,
               min(errors.error_type) as error_type, min(errors.error_message) as message,
               min(errors.csv_line) as line_text
        from _scan_errors as errors
        join _scan_scans as scans using (scan_id, file_id)
        group by all
    """)
    by_readable = {r.path.as_posix(): r for r in readables}
    split_lines: dict[str, list[bytes]] = {}  # a file's lines, split once when needed
    errors = []
    for readable_path, line, error_type, message, line_text in conn.execute(
        f"select * from _scan_error_lines_{tag} order by all"
    ).fetchall():
        readable = by_readable[readable_path]
        position = line + readable.offset
        raw = b""
        if error_type == "INVALID ENCODING":
            if readable_path not in split_lines:
                split_lines[readable_path] = readable.piece.data.split(b"\n")
            raw = split_lines[readable_path][position - 1]
        errors.append(
            _ScanError(
                readable.piece.path.as_posix(), position, error_type, message, line_text, raw
            )
        )
    selected = ", ".join(f"_scan_rows.{quote_identifier(c)}" for c in columns)
    conn.execute(f"""
        create or replace temp view _scanned_{tag} as
        with file_start as (
            select _readable, min(rowid) as first_scan_order, count(*) as good_rows
            from _scan_rows_{tag} group by all
        ),
        error_count as (
            select _readable, count(*) as error_rows from _scan_error_lines_{tag} group by all
        ),
        all_lines as (
            select
                file_start._readable,
                unnest(range({first_line},
                             file_start.good_rows + error_count.error_rows + {first_line}))
                    as line
            from file_start
            join error_count using (_readable)
        ),
        free_lines as (
            select
                _readable,
                line,
                row_number() over (partition by _readable order by line) as ordinal
            from all_lines
            anti join _scan_error_lines_{tag} using (_readable, line)
        ),
        ordered_rows as (
            select
                _scan_rows.*,
                _scan_rows.rowid - file_start.first_scan_order + 1 as ordinal
            from _scan_rows_{tag} as _scan_rows
            join file_start using (_readable)
        )
        select
            _scan_files_{tag}._file,
            coalesce(free_lines.line, _scan_rows.ordinal + {first_line - 1})
                + _scan_files_{tag}._offset as _position,
            {selected}
        from ordered_rows as _scan_rows
        left join free_lines using (_readable, ordinal)
        join _scan_files_{tag} using (_readable)
    """)
    for table in ("_scan_errors", "_scan_scans"):
        conn.execute(f"drop table {table}")
    temporaries += [
        f"view _scanned_{tag}",
        f"table _scan_rows_{tag}",
        f"table _scan_files_{tag}",
        f"table _scan_error_lines_{tag}",
    ]
    return errors


def _reader_rejections(
    errors: list[_ScanError], encoding: str, codes: dict[str, str]
) -> list[Rejected]:
    rejected = []
    for error in errors:
        if error.error_type == "INVALID ENCODING":
            # The payload is the line as it is in the source file, bytes escaped.
            rejected.append(
                Rejected(
                    error.file,
                    error.position,
                    "undecodable_bytes",
                    f"line is not valid {encoding} text",
                    _payload(error.raw_line),
                )
            )
        else:
            code = codes.get(error.error_type, "malformed_csv")
            rejected.append(
                Rejected(
                    error.file,
                    error.position,
                    code,
                    f"{error.error_type.lower()}: {error.message}",
                    error.line_text,
                )
            )
    return rejected


_JSON_LINE_OPTIONS = (
    # A valid JSON line holds no raw control character, so \x01 never splits one; a line
    # that holds one is broken JSON and is rejected as such.
    "header = false, delim = '\x01', quote = '', escape = '', max_line_size = 16777216"
)
_JSON_READER_ERRORS = {
    "TOO MANY COLUMNS": "malformed_json",
    "LINE SIZE OVER MAXIMUM": "oversize_field",
}


def _read_jsonl_files(
    conn: duckdb.DuckDBPyConnection,
    fileset: FileSet,
    pieces: list[_Slice],
    scratch_dir: Path,
    tag: str,
    temporaries: list[str],
) -> tuple[list[Rejected], list[str]]:
    """DuckDB reads the lines of all pieces in one scan, then parses and extracts the JSON.

    Returns the rows the readers rejected and the view holding the parsed rows."""
    contract = fileset.contract
    readables = []
    for piece in pieces:
        body = piece.data[piece.start_byte :]
        empty_lines = _has_empty_lines(body)
        if _is_utf8(fileset.encoding) and piece.start_byte == 0 and not empty_lines:
            readables.append(_Readable(piece, piece.path, 0))
            continue
        copy = _utf8_copy(fileset, piece, b"", body, scratch_dir, mark_empty=empty_lines)
        readables.append(_Readable(piece, copy, piece.first_line - 1))
    errors = _scan(
        conn,
        readables,
        ["line"],
        _JSON_LINE_OPTIONS,
        first_line=1,
        tag=tag,
        temporaries=temporaries,
    )
    rejected = _reader_rejections(errors, fileset.encoding, _JSON_READER_ERRORS)
    # One parse per line: every accepted name becomes a text field of one struct.
    shape = json.dumps(
        {name: "VARCHAR" for column in contract.columns for name in column.accepted_names},
        ensure_ascii=False,
    )
    extracted = ", ".join(
        "coalesce("
        + ", ".join(f"struct_extract(_values, {literal(name)})" for name in column.accepted_names)
        + f") as {quote_identifier(column.name)}"
        for column in contract.columns
    )
    # Blank lines are not rows. (A trailing \r is JSON white space: no need to strip it.)
    # Each line is validated once; a valid line whose first character is `{` is an object.
    conn.execute(f"""
        create or replace temp table _jsonl_rows_{tag} as
        select
            _file,
            _position,
            line,
            json_valid(line) as _valid,
            regexp_matches(line, '^\s*[{{]') as _object
        from _scanned_{tag}
        where line <> {literal(_EMPTY_LINE.decode())}
          and not (length(line) <= 16 and trim(line) = '')
    """)
    malformed = conn.execute(f"""
        select _file, _position, line, _valid
        from _jsonl_rows_{tag}
        where not (_valid and _object)
    """).fetchall()
    for name, position, line, valid in malformed:
        reason = "line is JSON but not an object" if valid else "line is not valid JSON"
        rejected.append(Rejected(name, position, "malformed_json", reason, line))
    conn.execute(f"""
        create or replace temp view _part_{tag} as
        select _file, _position, line as _payload, {extracted}
        from (
            select _file, _position, line, json_transform(line, {literal(shape)}) as _values
            from _jsonl_rows_{tag}
            where _valid and _object
        )
    """)
    temporaries[:0] = [f"view _part_{tag}", f"table _jsonl_rows_{tag}"]
    return rejected, [f"_part_{tag}"]


_CSV_OPTIONS = "header = true, delim = ',', quote = '\"', escape = '\"'"


def _read_csv_files(
    conn: duckdb.DuckDBPyConnection,
    fileset: FileSet,
    pieces: list[_Slice],
    scratch_dir: Path,
    tag: str,
    temporaries: list[str],
) -> tuple[list[Rejected], list[str]]:
    """One DuckDB scan per header layout over all the pieces that share it.

    Returns the rows the readers rejected and the views holding the parsed rows."""
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
        if _is_utf8(fileset.encoding) and piece.start_byte == 0:
            readable = _Readable(piece, piece.path, 0)
        else:
            body = (
                piece.data[header_end:] if piece.start_byte == 0 else piece.data[piece.start_byte :]
            )
            copy = _utf8_copy(
                fileset, piece, header.encode("utf-8"), body, scratch_dir, mark_empty=False
            )
            # The copy's line 1 is the header; its line 2 is the piece's first line.
            readable = _Readable(piece, copy, piece.first_line - 2 if piece.start_byte else 0)
        groups.setdefault(columns, []).append(readable)
    rejected: list[Rejected] = []
    parts = []
    for number, (columns, readables) in enumerate(groups.items()):
        group_tag = f"{tag}_{number}"
        errors = _scan(
            conn,
            readables,
            list(columns),
            _CSV_OPTIONS,
            first_line=2,
            tag=group_tag,
            temporaries=temporaries,
        )
        rejected += _reader_rejections(errors, fileset.encoding, _READER_ERRORS)
        selected = ", ".join(
            quote_identifier(c.name) if c.name in columns else f"null as {quote_identifier(c.name)}"
            for c in fileset.contract.columns
        )
        conn.execute(
            f"create or replace temp view _part_{group_tag} as "
            f"select _file, _position, cast(null as varchar) as _payload, {selected} "
            f"from _scanned_{group_tag}"
        )
        temporaries.insert(0, f"view _part_{group_tag}")
        parts.append(f"_part_{group_tag}")
    return rejected, parts


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
