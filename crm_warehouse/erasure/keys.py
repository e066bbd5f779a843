"""Keyed hashes of a person's identifiers: what the erasure blocklist stores instead of them.

A blocklist of plain SHA-256 phone hashes could be reversed by hashing every possible mobile
number, so entries are HMAC-SHA-256 under a key the operator controls: `CRM_ERASURE_KEY` from
the environment (a secret store in production), or else a random key generated once into
`CRM_HOME/erasure/erasure.key`, readable by its owner only.

The same HMAC is computed in DuckDB SQL, so ingest can match millions of incoming rows against
the blocklist without pulling them into Python.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from dataclasses import dataclass
from typing import Literal

from crm_warehouse.settings import Settings

KeyKind = Literal[
    "phone",  # an 11-digit mainland mobile number, without country code or separators
    "email",  # lower case, trimmed
    "member",  # the sales system's member number
    "form",  # form submission id
    "ticket",  # call-centre ticket id
    "call",  # call id
    "touch",  # campaign touch id
    "sales_customer",  # the sales system's customer row id
    "sales_order",  # the sales system's order id
    "customer",  # a crm-warehouse customer id: names an erasure's subject in the audit log
]
KEY_KINDS: tuple[KeyKind, ...] = (
    "phone",
    "email",
    "member",
    "form",
    "ticket",
    "call",
    "touch",
    "sales_customer",
    "sales_order",
)

_BLOCK_SIZE = 64  # SHA-256's block size, which HMAC pads the key to


def normalize(kind: KeyKind, value: object) -> str | None:
    """The form of a value that is hashed; None when there is nothing to match on."""
    if value is None:
        return None
    text = str(value).strip()
    if kind == "phone":
        digits = "".join(character for character in text if character.isdigit())
        return digits[-11:] if len(digits) >= 11 else None
    if kind == "email":
        return text.lower() or None
    return text or None


def normalized_sql(kind: KeyKind, expression: str) -> str:
    """`normalize` in DuckDB SQL, over a text expression."""
    text = f"trim(cast({expression} as varchar))"
    if kind == "phone":
        digits = f"regexp_replace(coalesce({text}, ''), '[^0-9]', '', 'g')"
        return f"(case when length({digits}) >= 11 then right({digits}, 11) end)"
    if kind == "email":
        return f"nullif(lower({text}), '')"
    return f"nullif({text}, '')"


@dataclass(frozen=True)
class ErasureKey:
    secret: bytes

    def digest(self, kind: KeyKind, value: object) -> str | None:
        normalized = normalize(kind, value)
        if normalized is None:
            return None
        message = f"{kind}:{normalized}".encode()
        return hmac.new(self.secret, message, hashlib.sha256).hexdigest()

    def digest_sql(self, kind: KeyKind, expression: str) -> str:
        """HMAC-SHA-256 of `expression` in DuckDB SQL, equal to `digest` for the same value."""
        padded = (
            hashlib.sha256(self.secret).digest() if len(self.secret) > _BLOCK_SIZE else self.secret
        ).ljust(_BLOCK_SIZE, b"\0")
        inner = bytes(byte ^ 0x36 for byte in padded).hex()
        outer = bytes(byte ^ 0x5C for byte in padded).hex()
        message = f"encode('{kind}:' || {normalized_sql(kind, expression)})"
        return f"sha256(unhex('{outer}') || unhex(sha256(unhex('{inner}') || {message})))"


def load_key(settings: Settings, *, create: bool) -> ErasureKey | None:
    """The operator's key (`CRM_ERASURE_KEY`), else the generated key file (made if asked)."""
    if settings.erasure_key:
        return ErasureKey(settings.erasure_key.encode())
    path = settings.erasure_dir / "erasure.key"
    if path.exists():
        return ErasureKey(bytes.fromhex(path.read_text().strip()))
    if not create:
        return None
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(secrets.token_hex(32) + "\n")
    return ErasureKey(bytes.fromhex(path.read_text().strip()))
