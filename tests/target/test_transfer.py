"""Tables cross between DuckDB and a real PostgreSQL unchanged, whatever their values."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from crm_warehouse.target.postgres import (
    PostgresConnection,
    TransferError,
    pull_tables,
    push_tables,
)

pytestmark = pytest.mark.xdist_group("postgres")

AWKWARD_ROWS = """
create schema raw;
create table raw.people (
    id bigint, name varchar, note varchar, tokens varchar[], amount decimal(18, 2),
    score double, active boolean, born date, seen_at timestamp,
    changed_at timestamp with time zone, extra json
);
insert into raw.people values
    (1, '张三', 'plain', ['zhang', 'san'], 12.50, 0.25, true, '1990-02-28',
     '2026-10-31 23:59:59.123456', '2026-10-31 16:00:00+00', '{"城市": "上海"}'),
    -- the empty string is not NULL; quotes, commas, a new line and a backslash survive
    (2, '', 'a "quoted", comma
new line \\ back', ['o''brien', 'a,b', 'say "hi"', ''], -0.01, -1e-9, false, null,
     null, null, null),
    (3, null, null, null, null, null, null, null, null, null, null);
"""


def test_a_table_goes_to_postgres_and_back_unchanged(
    postgres_database: PostgresConnection, tmp_path: Path
) -> None:
    source = duckdb.connect(str(tmp_path / "source.duckdb"))
    source.execute(AWKWARD_ROWS)

    pushed = push_tables(source, postgres_database, [("raw", "people")], tmp_path / "scratch")
    assert pushed == {("raw", "people"): 3}
    with postgres_database.connect() as pg, pg.cursor() as cursor:
        cursor.execute(
            "select name, note is null, tokens[2], extra->>'城市' from raw.people order by id"
        )
        assert cursor.fetchall() == [
            ("张三", False, "san", "上海"),
            ("", False, "a,b", None),
            (None, True, None, None),
        ]

    mirror = duckdb.connect(str(tmp_path / "mirror.duckdb"))
    columns = "id, name, note, tokens, amount, score, active, born, seen_at, changed_at, extra"
    pulled = pull_tables(postgres_database, mirror, [("raw", "people")], tmp_path / "scratch")
    assert pulled == {("raw", "people"): 3}
    ordered = f"select {columns} from raw.people order by id"
    assert mirror.execute(ordered).fetchall() == source.execute(ordered).fetchall()
    assert mirror.execute(
        "select data_type from information_schema.columns where table_name = 'people' "
        "and column_name in ('amount', 'changed_at') order by column_name"
    ).fetchall() == [("DECIMAL(18,2)",), ("TIMESTAMP WITH TIME ZONE",)]
    # Nothing personal is left behind in the scratch folder.
    assert list((tmp_path / "scratch").iterdir()) == []


def test_a_second_push_replaces_rows_and_keeps_the_table(
    postgres_database: PostgresConnection, tmp_path: Path
) -> None:
    source = duckdb.connect()
    source.execute("create schema raw; create table raw.t as select range as id from range(5)")
    push_tables(source, postgres_database, [("raw", "t")], tmp_path)
    with postgres_database.connect() as pg, pg.cursor() as cursor:
        # What PostgreSQL adds (a view, a grant) must survive the next push of the same columns.
        cursor.execute("create view raw.t_view as select id from raw.t")
        pg.commit()

    source.execute("delete from raw.t where id < 3")
    push_tables(source, postgres_database, [("raw", "t")], tmp_path)
    with postgres_database.connect() as pg, pg.cursor() as cursor:
        cursor.execute("select array_agg(id order by id) from raw.t_view")
        assert cursor.fetchone() == ([3, 4],)

    source.execute("alter table raw.t add column label varchar")
    push_tables(source, postgres_database, [("raw", "t")], tmp_path)
    with postgres_database.connect() as pg, pg.cursor() as cursor:
        cursor.execute("select count(*), count(label) from raw.t")
        assert cursor.fetchone() == (2, 0)


def test_a_missing_table_is_named(postgres_database: PostgresConnection, tmp_path: Path) -> None:
    with pytest.raises(TransferError, match=r"raw\.nowhere"):
        push_tables(duckdb.connect(), postgres_database, [("raw", "nowhere")], tmp_path)
    with pytest.raises(TransferError, match=r"raw\.nowhere"):
        pull_tables(postgres_database, duckdb.connect(), [("raw", "nowhere")], tmp_path)
