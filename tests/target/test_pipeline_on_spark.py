"""The whole pipeline with its dbt project on a real local Spark (`CRM_TARGET=spark`, dbt-spark
`session` on `local[2]`) gives the same customers, segments, KPIs and alerts as the embedded
DuckDB run on the same sources, and erasure reaches Spark's copies."""

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
from crm_warehouse.target.spark import (
    exported_sources,
    sources_folder,
    spark_table_folder,
    spark_tables,
)
from orchestration.dbt_project import dbt_project
from orchestration.run import run_pipeline

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("spark")]


def _spark_folders(home: Path) -> list[Path]:
    return [spark_table_folder(home, *table) for table in spark_tables(home)] + [
        sources_folder(home) / schema / table for schema, table in exported_sources(home)
    ]


def _spark_hits(home: Path, needles: list[str]) -> list[str]:
    """Every Parquet table under CRM_HOME/spark whose rows, as text, hold a needle."""
    found = []
    with duckdb.connect() as reader:
        for folder in _spark_folders(home):
            files = f"read_parquet('{folder}/*.parquet')"
            for needle in needles:
                hits = reader.execute(
                    f"select count(*) from {files} as t where strpos(cast(t as varchar), ?) > 0",
                    [needle],
                ).fetchone()[0]
                if hits:
                    found.append(f"{folder.relative_to(home)}: {needle}")
    return found


def test_the_pipeline_on_spark_matches_duckdb(
    resolved_home: Settings,
    business_figures: Callable[[Path], dict[str, list[tuple[object, ...]]]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    home = tmp_path / "crm"
    shutil.copytree(resolved_home.sources_dir, home / "sources")
    monkeypatch.setenv("CRM_HOME", str(home))
    monkeypatch.setenv("CRM_TARGET", "spark")
    settings = Settings.from_env()
    assert settings.target == "spark"

    outcome = run_pipeline(settings)

    assert outcome.success, outcome.failed_steps
    assert not outcome.skipped_steps, outcome.skipped_steps
    on_spark = business_figures(settings.warehouse_path)
    on_duckdb = business_figures(resolved_home.warehouse_path)
    assert on_spark["customers"][0][0] > 1_000
    assert on_spark == on_duckdb

    # Spark holds every model and seed (the membership history is its own model, not a
    # snapshot), row for row as the working store's mirror of it.
    relations = built_tables(dbt_project(settings).manifest_path)
    assert ("intermediate", "int_sales__membership_level_history") in relations
    assert not [table for table in relations if table[0] == "snapshots"]
    assert set(relations) <= set(spark_tables(home))
    with duckdb.connect(str(settings.warehouse_path), read_only=True) as mirror:
        for schema, table in relations:
            files = f"read_parquet('{spark_table_folder(home, schema, table)}/*.parquet')"
            on_spark_rows = mirror.execute(f"select count(*) from {files}").fetchone()[0]
            in_mirror = mirror.execute(f'select count(*) from "{schema}"."{table}"').fetchone()[0]
            assert on_spark_rows == in_mirror, f"{schema}.{table}"

        # Erasure reaches Spark: every table there is rewritten from its erased twin.
        customer_id, phone, email = mirror.execute(
            "select customer_id, phone_e164, email from marts.customer_360 "
            "where phone_e164 is not null and email is not null and order_count >= 2 "
            "order by customer_id limit 1"
        ).fetchone()
    needles = [normalize("phone", phone) or "", email, customer_id]
    assert len(_spark_hits(home, needles)) > 5
    report = erase_customer(settings, customer_id, reference="test")
    assert "raw.calls" in report.spark_tables_replaced
    assert "marts.customer_360" in report.spark_tables_replaced
    assert _spark_hits(home, needles) == []
