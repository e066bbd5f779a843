"""The demo's sales system as a PostgreSQL database, for running the sales pull against one.

The generator writes SQLite, whose loose typing holds defects a typed OLTP database cannot
(an amount typed as text, 30 February). This copies it into typed tables, the way a real
shop database on PostgreSQL is declared: a value its column cannot hold becomes NULL, which
is how such a defect reaches a warehouse from a typed source (and ingest quarantines it).
Each copy replaces the tables' rows, so `updated_at` drives the incremental pull as before.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path

import sqlalchemy as sa

from crm_warehouse.generate import sales_db

_metadata = sa.MetaData()
_text = sa.Text


def _table(name: str, *columns: sa.Column) -> sa.Table:
    return sa.Table(name, _metadata, *columns)


TABLES = {
    "customers": _table(
        "customers",
        sa.Column("id", sa.BigInteger, primary_key=True),
        sa.Column("member_no", _text, nullable=False),
        sa.Column("name", _text),
        sa.Column("phone", _text),
        sa.Column("email", _text),
        sa.Column("city", _text),
        sa.Column("birthday", sa.Date),
        sa.Column("gender", _text),
        sa.Column("registered_at", sa.DateTime),
        sa.Column("membership_level", _text),
        sa.Column("customer_type", _text),
        sa.Column("updated_at", sa.DateTime, nullable=False, index=True),
    ),
    "products": _table(
        "products",
        sa.Column("id", sa.BigInteger, primary_key=True),
        sa.Column("sku", _text, nullable=False),
        sa.Column("name", _text, nullable=False),
        sa.Column("category", _text),
        sa.Column("list_price", sa.Numeric(12, 2)),
        sa.Column("updated_at", sa.DateTime, nullable=False),
    ),
    "orders": _table(
        "orders",
        sa.Column("id", sa.BigInteger, primary_key=True),
        sa.Column("order_no", _text, nullable=False),
        sa.Column("customer_id", sa.BigInteger),
        sa.Column("ordered_at", sa.DateTime),
        sa.Column("status", _text),
        sa.Column("channel", _text),
        sa.Column("total_amount", sa.Numeric(14, 2)),
        sa.Column("updated_at", sa.DateTime, nullable=False, index=True),
    ),
    "order_lines": _table(
        "order_lines",
        sa.Column("id", sa.BigInteger, primary_key=True),
        sa.Column("order_id", sa.BigInteger, nullable=False),
        sa.Column("product_id", sa.BigInteger),
        sa.Column("quantity", sa.Integer),
        sa.Column("unit_price", sa.Numeric(12, 2)),
        sa.Column("amount", sa.Numeric(14, 2)),
        sa.Column("updated_at", sa.DateTime, nullable=False, index=True),
    ),
}
_COLUMNS = {
    "customers": sales_db.CUSTOMER_COLUMNS,
    "products": sales_db.PRODUCT_COLUMNS,
    "orders": sales_db.ORDER_COLUMNS,
    "order_lines": sales_db.ORDER_LINE_COLUMNS,
}
_CHUNK_ROWS = 20_000


def copy_sales_database(sqlite_path: Path, url: str) -> dict[str, int]:
    """Replace the four sales tables at `url` with the SQLite demo's rows; rows per table."""
    if not sqlite_path.exists():
        raise FileNotFoundError(f"{sqlite_path}: no demo sales database (crm generate first)")
    engine = sa.create_engine(url)
    copied: dict[str, int] = {}
    try:
        with engine.begin() as target, sqlite3.connect(sqlite_path) as source:
            _metadata.create_all(target)
            for name, table in TABLES.items():
                target.execute(table.delete())
                columns = _COLUMNS[name]
                convert = [_converter(table.c[column].type) for column in columns]
                cursor = source.execute(f"select {', '.join(columns)} from {name} order by id")
                copied[name] = 0
                while rows := cursor.fetchmany(_CHUNK_ROWS):
                    target.execute(
                        table.insert(),
                        [
                            {
                                column: to_type(value)
                                for column, to_type, value in zip(
                                    columns, convert, row, strict=True
                                )
                            }
                            for row in rows
                        ],
                    )
                    copied[name] += len(rows)
    finally:
        engine.dispose()
    return copied


def _converter(kind: sa.types.TypeEngine) -> Callable[[object], object]:
    if isinstance(kind, sa.DateTime):
        return _or_none(lambda value: datetime.fromisoformat(str(value)))
    if isinstance(kind, sa.Date):
        return _or_none(lambda value: date.fromisoformat(str(value)[:10]))
    if isinstance(kind, sa.Numeric):
        limit = Decimal(10) ** (kind.precision - kind.scale)
        step = Decimal(1).scaleb(-kind.scale)
        return _or_none(lambda value: _within(Decimal(str(value)).quantize(step), limit))
    if isinstance(kind, sa.Integer):
        limit = 2**63 if isinstance(kind, sa.BigInteger) else 2**31
        return _or_none(lambda value: _within(int(str(value)), limit))
    return lambda value: None if value is None else str(value)


def _within(number: int | Decimal, limit: int | Decimal) -> int | Decimal:
    if not -limit < number < limit:
        raise OverflowError(f"{number} does not fit the column")
    return number


def _or_none(parse: Callable[[object], object]) -> Callable[[object], object]:
    def convert(value: object) -> object:
        if value is None:
            return None
        try:
            return parse(value)
        except (ValueError, InvalidOperation, OverflowError):
            return None

    return convert
