"""The whole pipeline on a real local Spark (`CRM_TARGET=spark`: the dbt project through
dbt-spark `session` on `local[2]`, identity resolution on Splink's Spark backend, scoring on
Spark's executors) gives the same customers, segments, KPIs, alerts, churn scores and lifetime
values as the embedded DuckDB run on the same sources, and erasure reaches Spark's copies."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import duckdb
import pytest

from crm_warehouse.erasure.erase import erase_customer
from crm_warehouse.settings import Settings
from crm_warehouse.target.exchange import built_tables
from crm_warehouse.target.spark import (
    exported_sources,
    sources_folder,
    spark_table_folder,
    spark_tables,
)
from orchestration.dbt_project import dbt_project

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
    pipeline_on: Callable[..., Settings],
    erasure_subject: Callable[[Settings], tuple[str, list[str]]],
) -> None:
    def with_duckdb_runs_identity_model(settings: Settings) -> None:
        # Splink scores and clusters every pair on Spark with the DuckDB run's model
        # (training samples pairs at random, differently on each backend; that is tested
        # in tests/identity), so the same people must come out.
        assert settings.identity_engine == settings.scoring_engine == "spark"
        shutil.copytree(resolved_home.identity_model_dir, settings.identity_model_dir)

    settings = pipeline_on("spark", with_duckdb_runs_identity_model)
    home = settings.crm_home

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
    customer_id, needles = erasure_subject(settings)
    assert len(_spark_hits(home, needles)) > 5
    report = erase_customer(settings, customer_id, reference="test")
    assert "raw.calls" in report.spark_tables_replaced
    assert "marts.customer_360" in report.spark_tables_replaced
    assert _spark_hits(home, needles) == []
