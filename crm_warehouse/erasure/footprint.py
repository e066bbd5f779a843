"""A person's footprint: every key under which their data is held, found from one customer id.

Identity resolution says which source records are theirs (forms, tickets, sales customers).
Rows that identity does not link (calls, campaign touches) are theirs when they carry one of
the person's identifiers. So are rows of other records that carry the person's phone or email,
because the blocklist will drop such rows on arrival too, and what is kept must match what
would be loaded again.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

import duckdb
import pyarrow as pa

from crm_warehouse.erasure.keys import KeyKind, normalize, normalized_sql

# Keys of the warehouse's own making, which no source sends and the blocklist has no use for.
FootprintKind = KeyKind | str
CUSTOMER = "customer"  # crm-warehouse customer ids, current and merged into it
RECORD = "record"  # identity record ids, `<source>:<source key>`


class UnknownCustomer(LookupError):
    """No customer has this id, current or merged."""


@dataclass
class Footprint:
    customer_id: str  # the current id the erasure was resolved to
    keys: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))

    def add(self, kind: str, values: object) -> None:
        for value in values:  # type: ignore[attr-defined]
            normalized = normalize(kind, value)  # type: ignore[arg-type]
            if normalized is not None:
                self.keys[kind].add(normalized)

    def values(self, kind: str) -> list[str]:
        return sorted(self.keys.get(kind, ()))

    def as_arrow(self) -> pa.Table:
        rows = [(kind, value) for kind, values in sorted(self.keys.items()) for value in values]
        return pa.table(
            {
                "kind": pa.array([kind for kind, _ in rows], pa.string()),
                "value": pa.array([value for _, value in rows], pa.string()),
            }
        )


def qualified_tables(conn: duckdb.DuckDBPyConnection) -> dict[str, str]:
    """Each table's bare name to its `schema.table`: dbt's schemas vary with the target."""
    tables: dict[str, str] = {}
    for schema, name in conn.execute(
        "select schema_name, table_name from duckdb_tables() "
        "where database_name = current_database() order by all"
    ).fetchall():
        if name in tables:
            raise ValueError(f"{tables[name]} and {schema}.{name}: table names must be unique")
        tables[name] = f"{schema}.{name}"
    return tables


def _column(conn: duckdb.DuckDBPyConnection, sql: str, parameters: list[object]) -> list[object]:
    return [row[0] for row in conn.execute(sql, parameters).fetchall()]


def resolve_customer(conn: duckdb.DuckDBPyConnection, customer_id: str) -> tuple[str, set[str]]:
    """The current id of `customer_id` and every id merged into it over time."""
    merged_into = dict(
        conn.execute("select customer_id, merged_into from identity.customers").fetchall()
    )
    if customer_id not in merged_into:
        raise UnknownCustomer(f"no customer {customer_id!r} in identity.customers")
    current = customer_id
    seen = {current}
    while merged_into.get(current) is not None and merged_into[current] not in seen:
        current = merged_into[current]
        seen.add(current)
    ids = {current}
    grew = True
    while grew:
        merged = {old for old, new in merged_into.items() if new in ids} - ids
        grew = bool(merged)
        ids |= merged
    return current, ids


def find_footprint(conn: duckdb.DuckDBPyConnection, customer_id: str) -> Footprint:
    """Every key of the person behind `customer_id` (any id of theirs, current or merged)."""
    current, ids = resolve_customer(conn, customer_id)
    footprint = Footprint(current)
    footprint.add(CUSTOMER, ids)
    id_list = sorted(ids)
    records = conn.execute(
        "select source, source_key, phone, email, member_no from identity.records "
        "where list_contains(?, customer_id)",
        [id_list],
    ).fetchall()
    for source, source_key, phone, email, member_no in records:
        footprint.add(RECORD, [f"{source}:{source_key}"])
        footprint.add("phone", [phone])
        footprint.add("email", [email])
        footprint.add("member", [member_no])
        kind = {"forms": "form", "tickets": "ticket", "sales_customers": "member"}.get(source)
        if kind is not None:
            footprint.add(kind, [source_key])
    tables = qualified_tables(conn)

    def matching(name: str, key: str, identifiers: list[tuple[str, KeyKind]]) -> list[object]:
        if name not in tables:
            return []
        conditions = " or ".join(
            f"list_contains(${kind}, {normalized_sql(kind, column)})"
            for column, kind in identifiers
        )
        parameters = {kind: footprint.values(kind) for _, kind in identifiers}
        return [
            row[0]
            for row in conn.execute(
                f"select distinct cast({key} as varchar) from {tables[name]} where {conditions}",
                parameters,
            ).fetchall()
        ]

    footprint.add(
        "form",
        matching(
            "form_submissions",
            "submission_id",
            [("submission_id", "form"), ("phone", "phone"), ("email", "email")],
        ),
    )
    footprint.add(
        "ticket",
        matching(
            "tickets",
            "ticket_id",
            [("ticket_id", "ticket"), ("member_no", "member"), ("contact_phone", "phone")],
        ),
    )
    footprint.add(
        "sales_customer",
        matching(
            "sales_customers",
            "id",
            [("member_no", "member"), ("phone", "phone"), ("email", "email")],
        ),
    )
    footprint.add(
        RECORD,
        matching(
            "sales_customers",
            "'sales_customers:' || member_no",
            [("member_no", "member"), ("phone", "phone"), ("email", "email")],
        ),
    )
    footprint.add(
        "sales_order",
        matching("sales_orders", "id", [("customer_id", "sales_customer")]),
    )
    footprint.add("call", matching("calls", "call_id", [("caller_number", "phone")]))
    footprint.add(
        "touch",
        matching(
            "campaign_touches",
            "touch_id",
            [("member_no", "member"), ("contact", "phone"), ("contact", "email")],
        ),
    )
    # What the models attributed to the person by other means (a ticket's call, say).
    for name, key, kind in (
        ("int_callcentre__call_customers", "call_id", "call"),
        ("int_campaigns__touch_customers", "touch_id", "touch"),
        ("int_sales__customer_orders", "order_id", "sales_order"),
    ):
        if name in tables:
            footprint.add(
                kind,
                _column(
                    conn,
                    f"select distinct cast({key} as varchar) from {tables[name]} "
                    "where list_contains(?, customer_id)",
                    [id_list],
                ),
            )
    footprint.add(
        RECORD,
        [f"forms:{key}" for key in footprint.values("form")]
        + [f"tickets:{key}" for key in footprint.values("ticket")],
    )
    return footprint
