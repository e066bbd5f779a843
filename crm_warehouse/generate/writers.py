"""Append-only writers for the generated sources and their ground truth.

Files are appended block by block (so a million people stream through in bounded memory) and
every writer counts lines, so the truth can name the exact line of each planted bad row.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import ClassVar

import orjson


def csv_line(fields: list[str]) -> str:
    """One CSV record, quoted the way spreadsheet exports quote (only when needed)."""
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerow(fields)
    return buffer.getvalue()


def json_line(record: dict[str, object]) -> bytes:
    return orjson.dumps(record) + b"\n"


class LineFiles:
    """Appends lines to many files, writing each file's header once and counting its lines."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._lines: dict[Path, int] = {}
        self._pending: dict[Path, list[bytes]] = {}

    def line_count(self, path: Path) -> int:
        if path not in self._lines:
            self._lines[path] = _count_lines(path) if path.exists() else 0
        return self._lines[path]

    def append(self, path: Path, line: bytes, header: bytes | None = None) -> int:
        """Queue a line for `path`; returns its 1-based line number in the file."""
        if self.line_count(path) == 0 and header is not None:
            self._pending.setdefault(path, []).append(header)
            self._lines[path] = 1
        self._pending.setdefault(path, []).append(line)
        self._lines[path] += 1
        return self._lines[path]

    def flush(self) -> None:
        for path, lines in self._pending.items():
            path.parent.mkdir(parents=True, exist_ok=True)
            with path.open("ab") as handle:
                handle.writelines(lines)
        self._pending.clear()


class TruthTables:
    """The generator's answer key under `sources/_truth/`; the pipeline never reads it."""

    HEADERS: ClassVar[dict[str, list[str]]] = {
        "people.csv": [
            "person_id",
            "name",
            "gender",
            "birthday",
            "city",
            "mobile",
            "second_mobile",
            "phone_changed_on",
            "shares_phone_of",
            "email",
            "is_member",
            "registered_on",
            "churned_on",
            "complaints_from",
        ],
        "records.csv": ["source", "record_key", "person_id"],
        "bad_rows.csv": ["source", "file", "line", "record_key", "kind"],
    }

    def __init__(self, truth_dir: Path) -> None:
        self.truth_dir = truth_dir
        self._rows: dict[str, list[list[str]]] = {name: [] for name in self.HEADERS}

    def add(self, table: str, row: list[object]) -> None:
        self._rows[table].append(["" if value is None else str(value) for value in row])

    def flush(self) -> None:
        self.truth_dir.mkdir(parents=True, exist_ok=True)
        for table, rows in self._rows.items():
            path = self.truth_dir / table
            is_new = not path.exists()
            with path.open("a", encoding="utf-8", newline="") as handle:
                writer = csv.writer(handle, lineterminator="\n")
                if is_new:
                    writer.writerow(self.HEADERS[table])
                writer.writerows(rows)
            rows.clear()


def _count_lines(path: Path) -> int:
    with path.open("rb") as handle:
        return sum(chunk.count(b"\n") for chunk in iter(lambda: handle.read(1 << 20), b""))
