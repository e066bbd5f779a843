"""The sales system can be a PostgreSQL database: the pull reads its typed columns and its
`updated_at` watermark as it reads SQLite's."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import duckdb
import pytest
import sqlalchemy as sa

from crm_warehouse.erasure.blocklist import Blocklist
from crm_warehouse.generate.sales_postgres import copy_sales_database
from crm_warehouse.ingest.sales import pull_sales, pull_sales_days
from crm_warehouse.settings import DEFAULT_SALES_TABLES
from crm_warehouse.target.postgres import PostgresConnection

pytestmark = pytest.mark.xdist_group("postgres")

NOW = datetime(2027, 1, 1, tzinfo=ZoneInfo("Asia/Shanghai"))
EVENT_TABLES = ("sales_products", "sales_orders", "sales_order_lines")


def _pull(url: str) -> tuple[duckdb.DuckDBPyConnection, dict[str, tuple[int, int]]]:
    conn = duckdb.connect()
    counts = pull_sales(
        conn, url, DEFAULT_SALES_TABLES, "Asia/Shanghai", now=NOW, blocklist=Blocklist.empty()
    )
    return conn, {name: (c.rows_loaded, c.rows_quarantined) for name, c in counts.items()}


def _rows(conn: duckdb.DuckDBPyConnection, table: str) -> list[tuple[object, ...]]:
    # The source's own columns: lineage columns (_batch_id, _loaded_at…) differ by run.
    columns = [
        name
        for (name,) in conn.execute(
            "select column_name from information_schema.columns "
            "where table_schema = 'raw' and table_name = ? and column_name not like '\\_%' "
            "escape '\\' order by ordinal_position",
            [table],
        ).fetchall()
    ]
    return conn.execute(f"select {', '.join(columns)} from raw.{table} order by all").fetchall()


def test_the_sales_pull_reads_postgresql_as_it_reads_sqlite(
    sample_sources: Path, postgres_database: PostgresConnection
) -> None:
    sqlite_url = f"sqlite:///{sample_sources / 'sales' / 'sales.db'}"
    postgres_url = postgres_database.sqlalchemy_url
    copied = copy_sales_database(sample_sources / "sales" / "sales.db", postgres_url)
    assert copied["orders"] > 1_000

    from_sqlite, sqlite_counts = _pull(sqlite_url)
    from_postgres, postgres_counts = _pull(postgres_url)

    # Rows in = rows loaded + quarantined, from either engine.
    for name, (loaded, quarantined) in postgres_counts.items():
        source_table = name.removeprefix("sales_")
        assert loaded + quarantined == copied[source_table], name
    for table in EVENT_TABLES:
        assert postgres_counts[table] == sqlite_counts[table], table
        assert _rows(from_postgres, table) == _rows(from_sqlite, table), table
    # A typed database cannot hold a birthday of 30 February: it arrives NULL, not
    # quarantined, and every customer SQLite gave is given the same by PostgreSQL.
    assert set(_rows(from_sqlite, "sales_customers")) <= set(
        _rows(from_postgres, "sales_customers")
    )

    # Incremental: a changed order (its updated_at moved on) is all the next pull brings.
    engine = sa.create_engine(postgres_url)
    with engine.begin() as sales:
        changed = sales.execute(
            sa.text(
                "update orders set status = 'cancelled', updated_at = '2026-12-31 10:00:00' "
                "where id = (select min(id) from orders where ordered_at is not null) "
                "returning id"
            )
        ).scalar_one()
    engine.dispose()
    again = pull_sales(
        from_postgres,
        postgres_url,
        DEFAULT_SALES_TABLES,
        "Asia/Shanghai",
        now=NOW,
        blocklist=Blocklist.empty(),
    )
    assert {name: c.rows_loaded for name, c in again.items()} == {
        "sales_customers": 0,
        "sales_products": 0,
        "sales_orders": 1,
        "sales_order_lines": 0,
    }
    assert from_postgres.execute(
        "select status from raw.sales_orders where id = ?", [changed]
    ).fetchall() == [("cancelled",)]


def test_a_day_pull_reads_postgresql_as_it_reads_sqlite(
    sample_sources: Path, postgres_database: PostgresConnection
) -> None:
    sqlite_url = f"sqlite:///{sample_sources / 'sales' / 'sales.db'}"
    postgres_url = postgres_database.sqlalchemy_url
    copy_sales_database(sample_sources / "sales" / "sales.db", postgres_url)
    with sa.create_engine(sqlite_url).connect() as sales:
        # The busiest day (the newest may be a planted date in the future).
        busiest = sales.execute(
            sa.text(
                "select substr(ordered_at, 1, 10) from orders "
                "group by 1 order by count(*) desc, 1 limit 1"
            )
        )
        last = date.fromisoformat(busiest.scalar_one())
    first = last - timedelta(days=2)

    pulled = {}
    for url in (sqlite_url, postgres_url):
        conn = duckdb.connect()
        # What the orders name first, as the backfill job does.
        pull_sales(
            conn,
            url,
            DEFAULT_SALES_TABLES,
            "Asia/Shanghai",
            now=NOW,
            blocklist=Blocklist.empty(),
            only=("customers", "products"),
        )
        counts = pull_sales_days(
            conn,
            url,
            DEFAULT_SALES_TABLES,
            "Asia/Shanghai",
            first,
            last,
            now=NOW,
            blocklist=Blocklist.empty(),
        )
        pulled[url] = (conn, {name: c.rows_loaded for name, c in counts.items()})

    (from_sqlite, sqlite_counts), (from_postgres, postgres_counts) = pulled.values()
    assert postgres_counts == sqlite_counts
    assert postgres_counts["sales_orders"] > 20
    for table in ("sales_orders", "sales_order_lines"):
        assert _rows(from_postgres, table) == _rows(from_sqlite, table), table
