"""The demo's sales system: an OLTP database in SQLite, written the way a shop system writes it.

SQLite's loose typing lets the demo hold what real OLTP exports hold: an amount typed as text,
a date that does not exist, an order whose customer was deleted.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

SCHEMA = """
create table if not exists customers (
    id integer primary key,
    member_no text not null,
    name text,
    phone text,
    email text,
    city text,
    birthday text,
    gender text,
    registered_at text,
    membership_level text,
    customer_type text,
    updated_at text not null
);
create table if not exists products (
    id integer primary key,
    sku text not null,
    name text not null,
    category text,
    list_price real,
    updated_at text not null
);
create table if not exists orders (
    id integer primary key,
    order_no text not null,
    customer_id integer,
    ordered_at text,
    status text,
    channel text,
    total_amount real,
    updated_at text not null
);
create table if not exists order_lines (
    id integer primary key,
    order_id integer not null,
    product_id integer,
    quantity integer,
    unit_price real,
    amount real,
    updated_at text not null
);
create index if not exists orders_updated_at on orders (updated_at);
create index if not exists order_lines_updated_at on order_lines (updated_at);
create index if not exists customers_updated_at on customers (updated_at);
"""

CUSTOMER_COLUMNS = [
    "id",
    "member_no",
    "name",
    "phone",
    "email",
    "city",
    "birthday",
    "gender",
    "registered_at",
    "membership_level",
    "customer_type",
    "updated_at",
]
PRODUCT_COLUMNS = ["id", "sku", "name", "category", "list_price", "updated_at"]
ORDER_COLUMNS = [
    "id",
    "order_no",
    "customer_id",
    "ordered_at",
    "status",
    "channel",
    "total_amount",
    "updated_at",
]
ORDER_LINE_COLUMNS = [
    "id",
    "order_id",
    "product_id",
    "quantity",
    "unit_price",
    "amount",
    "updated_at",
]


def connect(path: Path) -> sqlite3.Connection:
    path.parent.mkdir(parents=True, exist_ok=True)
    connection = sqlite3.connect(path)
    connection.execute("pragma journal_mode = wal")
    connection.execute("pragma synchronous = normal")
    connection.executescript(SCHEMA)
    return connection


def insert(
    connection: sqlite3.Connection, table: str, columns: list[str], rows: list[tuple[object, ...]]
) -> None:
    if not rows:
        return
    placeholders = ", ".join("?" for _ in columns)
    connection.executemany(
        f"insert or replace into {table} ({', '.join(columns)}) values ({placeholders})", rows
    )
