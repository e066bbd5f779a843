"""New source files: what the sensor compares between ticks.

A file counts as new when its path is new or its size or modification time changed (the
ticket log grows in place). The cursor is the previous listing, as JSON. Contents are not
read: ingest decides by content hash what is really new, so a touched file costs one
no-op run at worst.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from crm_warehouse.ingest.sources import file_sources
from crm_warehouse.settings import Settings


@dataclass(frozen=True)
class Arrivals:
    files: list[str]  # new or changed since the cursor, sorted
    cursor: str  # the listing to compare with next time


def listing(settings: Settings) -> dict[str, list[int]]:
    """Every file the file sources would read now: path -> [size, mtime in ns]."""
    found: dict[str, list[int]] = {}
    for filesets in file_sources(settings).values():
        for fileset in filesets:
            if not fileset.directory.is_dir():
                continue
            for path in fileset.directory.glob(fileset.pattern):
                status = path.stat()
                found[path.as_posix()] = [status.st_size, status.st_mtime_ns]
    return found


def arrivals(settings: Settings, cursor: str | None) -> Arrivals:
    """The files that arrived or changed since `cursor` (all of them on the first tick)."""
    previous: dict[str, list[int]] = json.loads(cursor) if cursor else {}
    current = listing(settings)
    changed = sorted(path for path, stamp in current.items() if previous.get(path) != stamp)
    return Arrivals(changed, json.dumps(current, sort_keys=True))
