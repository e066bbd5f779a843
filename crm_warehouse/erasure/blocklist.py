"""The erasure blocklist: keyed hashes of erased people's identifiers, which ingest drops.

Erasing a person rewrites what is under `CRM_HOME`, but the source systems may still hold and
re-send them (an old export re-delivered, a full re-pull of the sales database). Every loader
therefore drops incoming rows that carry a blocklisted identifier, before validation, so they
never reach raw or quarantine; the batch counts them as erased (rows in = loaded + quarantined
+ erased).

The list lives in `CRM_HOME/erasure/blocklist.csv` (erasure id, kind, HMAC), beside the
warehouse rather than inside it, so a warehouse rebuilt from the sources still honours it.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import pyarrow as pa

from crm_warehouse.erasure.keys import ErasureKey, KeyKind, load_key
from crm_warehouse.ingest.validation import quote_identifier
from crm_warehouse.settings import Settings

BLOCKLIST_COLUMNS = ("erasure_id", "kind", "digest")

_SEPARATORS = re.compile(r"[\s()+\-]")
_MOBILE = re.compile(r"(?<!\d)(?:0086|86)?(1\d{10})(?!\d)")
_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
_CODE = re.compile(r"(?<![0-9A-Za-z])[A-Z]{1,3}\d{6,}(?![0-9A-Za-z])")
_CODE_KINDS: tuple[KeyKind, ...] = ("member", "form", "ticket", "call", "touch")


class ErasureKeyMissing(RuntimeError):
    """People were erased, but the key their blocklist entries were hashed with is gone."""


def blocklist_path(settings: Settings) -> Path:
    return settings.erasure_dir / "blocklist.csv"


@dataclass(frozen=True)
class Blocklist:
    key: ErasureKey | None = None
    digests: frozenset[tuple[str, str]] = field(default_factory=frozenset)  # (kind, digest)

    @classmethod
    def empty(cls) -> Blocklist:
        return cls()

    @classmethod
    def load(cls, settings: Settings) -> Blocklist:
        """The blocklist of this `CRM_HOME`; empty when nobody was ever erased."""
        path = blocklist_path(settings)
        if not path.exists():
            return cls.empty()
        with path.open(newline="") as handle:
            digests = frozenset((row["kind"], row["digest"]) for row in csv.DictReader(handle))
        if not digests:
            return cls.empty()
        key = load_key(settings, create=False)
        if key is None:
            raise ErasureKeyMissing(
                f"{path} lists erased people but their key is missing: set CRM_ERASURE_KEY to "
                f"the key they were erased under, or restore {settings.erasure_dir}/erasure.key"
            )
        return cls(key, digests)

    def __bool__(self) -> bool:
        return bool(self.digests)

    def blocks(self, kind: KeyKind, value: object) -> bool:
        if self.key is None:
            return False
        digest = self.key.digest(kind, value)
        return digest is not None and (kind, digest) in self.digests

    def mentioned_in(self, text: str) -> bool:
        """Whether free text (an unreadable row's bytes) carries a blocked identifier."""
        if not self:
            return False
        compact = _SEPARATORS.sub("", text)
        candidates: list[tuple[KeyKind, str]] = [
            ("phone", phone) for phone in _MOBILE.findall(compact)
        ]
        candidates += [("email", email) for email in _EMAIL.findall(text)]
        candidates += [(kind, code) for code in _CODE.findall(text) for kind in _CODE_KINDS]
        return any(self.blocks(kind, value) for kind, value in candidates)

    def drop_blocked_rows(
        self,
        conn: duckdb.DuckDBPyConnection,
        table: str,
        personal_keys: Iterable[tuple[str, KeyKind]],
    ) -> int:
        """Delete the rows of `table` whose key columns hold a blocked value; returns how many."""
        personal_keys = list(personal_keys)
        if not self or not personal_keys or self.key is None:
            return 0
        kinds, digests = zip(*sorted(self.digests), strict=True)
        conn.register(
            "_blocked_digests",
            pa.table({"kind": pa.array(kinds), "digest": pa.array(digests)}),
        )
        try:
            predicate = " or ".join(
                f"{self.key.digest_sql(kind, f'{table}.{quote_identifier(column)}')} in "
                f"(select digest from _blocked_digests where kind = '{kind}')"
                for column, kind in personal_keys
            )
            blocked = conn.execute(f"select count(*) from {table} where {predicate}").fetchall()
            count = int(blocked[0][0])
            if count:
                conn.execute(f"delete from {table} where {predicate}")
            return count
        finally:
            conn.unregister("_blocked_digests")


def append_to_blocklist(
    settings: Settings, erasure_id: str, entries: Iterable[tuple[KeyKind, str]]
) -> int:
    """Add an erasure's (kind, digest) entries to the blocklist file; returns how many."""
    path = blocklist_path(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    new_file = not path.exists()
    listed: set[tuple[str, str]] = set()
    if not new_file:
        with path.open(newline="") as handle:
            listed = {(row["kind"], row["digest"]) for row in csv.DictReader(handle)}
    rows = sorted(set(entries) - listed)
    with path.open("a", newline="") as handle:
        writer = csv.writer(handle)
        if new_file:
            writer.writerow(BLOCKLIST_COLUMNS)
        writer.writerows((erasure_id, kind, digest) for kind, digest in rows)
    return len(rows)
