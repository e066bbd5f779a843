"""Following a customer_id an app stored earlier to the id the customer has now."""

from __future__ import annotations

from dataclasses import dataclass

import duckdb


@dataclass(frozen=True)
class IdTrail:
    customer_id: str
    current_customer_id: str
    status: str  # active, or merged
    steps: list[str]


def follow(conn: duckdb.DuckDBPyConnection, customer_id: str) -> IdTrail | None:
    """The current id of `customer_id` and the merges and splits on the way; None if the
    id was never issued. Reads `identity.customers` and `identity.customer_id_history`."""
    found = conn.execute(
        "select coalesce(merged_into, customer_id), merged_into is null "
        "from identity.customers where customer_id = ?",
        [customer_id],
    ).fetchall()
    if not found:
        return None
    current, active = found[0]
    history = conn.execute(
        """
        select old_customer_id, new_customer_id, change_kind, reason, changed_at
        from identity.customer_id_history
        where old_customer_id = ? or new_customer_id = ?
        order by changed_at
        """,
        [customer_id, customer_id],
    ).fetchall()
    steps = [
        f"{changed_at:%Y-%m-%d %H:%M} {kind}: {old} → {new} ({reason})"
        for old, new, kind, reason, changed_at in history
    ]
    return IdTrail(customer_id, str(current), "active" if active else "merged", steps)
