"""The whole pipeline with its dbt project on a real PostgreSQL (`CRM_TARGET=postgres`)
gives the same customers, segments, KPIs and alerts as the embedded DuckDB run."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import duckdb
import pytest

from crm_warehouse.erasure.erase import erase_customer
from crm_warehouse.erasure.keys import normalize
from crm_warehouse.settings import Settings
from crm_warehouse.target.exchange import built_tables
from crm_warehouse.target.postgres import PostgresConnection, list_tables
from orchestration.dbt_project import dbt_project
from orchestration.run import run_pipeline

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
    resolved_home: Settings,
    postgres_env: PostgresConnection,
    business_figures: Callable[[Path], dict[str, list[tuple[object, ...]]]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    home = tmp_path / "crm"
    shutil.copytree(resolved_home.sources_dir, home / "sources")
    monkeypatch.setenv("CRM_HOME", str(home))
    monkeypatch.setenv("CRM_TARGET", "postgres")
    settings = Settings.from_env()
    assert settings.target == "postgres"

    outcome = run_pipeline(settings)

    assert outcome.success, outcome.failed_steps
    assert not outcome.skipped_steps, outcome.skipped_steps
    on_postgres, on_duckdb = (
        business_figures(settings.warehouse_path),
        business_figures(resolved_home.warehouse_path),
    )
    assert on_postgres["customers"][0][0] > 1_000
    assert on_postgres == on_duckdb

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
    with duckdb.connect(str(settings.warehouse_path), read_only=True) as conn:
        customer_id, phone, email = conn.execute(
            "select customer_id, phone_e164, email from marts.customer_360 "
            "where phone_e164 is not null and email is not null and order_count >= 2 "
            "order by customer_id limit 1"
        ).fetchone()
    needles = [normalize("phone", phone) or "", email, customer_id]
    assert len(_postgres_hits(postgres_env, needles)) > 5
    report = erase_customer(settings, customer_id, reference="test")
    assert "raw.calls" in report.postgres_tables_replaced
    assert _postgres_hits(postgres_env, needles) == []
