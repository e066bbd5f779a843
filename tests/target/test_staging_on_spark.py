"""The dbt project's seeds and staging layer on a real local Spark (dbt-spark, `session`),
from the same raw rows as the DuckDB run, give the same tables row for row."""

from __future__ import annotations

import shutil
from pathlib import Path

import duckdb
import pytest

from crm_warehouse.settings import Settings
from crm_warehouse.target.spark import SparkDbt, build_on_spark, spark_table_folder
from orchestration.dbt_project import DBT_PROJECT_DIR, dbt_executable

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("spark")]

SELECTION = "resource_type:seed staging"


def _columns(conn: duckdb.DuckDBPyConnection, relation: str) -> str:
    names = [row[0] for row in conn.execute(f"describe select * from {relation}").fetchall()]
    return ", ".join(f'"{name}"' for name in names)


def test_seeds_and_staging_on_spark_equal_duckdbs_row_for_row(
    resolved_home: Settings, tmp_path: Path
) -> None:
    home = tmp_path / "crm"
    home.mkdir()
    # The raw tables the DuckDB run loaded; staging is built again, on Spark, over them.
    shutil.copyfile(resolved_home.warehouse_path, home / "warehouse.duckdb")
    dbt = SparkDbt(
        executable=dbt_executable(),
        project_dir=DBT_PROJECT_DIR,
        target_path=home / "dbt" / "target",
        crm_home=home,
    )
    with duckdb.connect(str(home / "warehouse.duckdb")) as conn:
        conn.execute("drop schema staging cascade")
        mirrored = build_on_spark(conn, dbt, SELECTION)

    staging = {table for schema, table in mirrored if schema == "staging"}
    assert "stg_sales__orders" in staging and "stg_forms__submissions" in staging
    assert ("reference", "china_cities") in mirrored
    # Spark's own tables are Parquet under CRM_HOME, where the profile puts its warehouse.
    assert list(spark_table_folder(home, "staging", "stg_sales__orders").glob("*.parquet"))

    with duckdb.connect(str(resolved_home.warehouse_path), read_only=True) as on_duckdb:
        on_duckdb.execute(f"attach '{home / 'warehouse.duckdb'}' as on_spark (read_only)")
        expected = {
            row[0]
            for row in on_duckdb.execute(
                "select table_name from information_schema.tables "
                "where table_catalog = current_database() and table_schema = 'staging'"
            ).fetchall()
        }
        assert staging == expected
        for schema, table in mirrored:
            ours, theirs = f"{schema}.{table}", f"on_spark.{schema}.{table}"
            columns = _columns(on_duckdb, ours)
            assert _columns(on_duckdb, theirs) == columns, table
            rows = on_duckdb.execute(f"select count(*) from {ours}").fetchone()[0]
            assert rows > 0 and mirrored[(schema, table)] == rows, table
            for left, right in ((ours, theirs), (theirs, ours)):
                differing = on_duckdb.execute(
                    f"select count(*) from (select {columns} from {left} "
                    f"except all select {columns} from {right})"
                ).fetchone()[0]
                assert differing == 0, f"{table}: {differing} rows of {left} not in {right}"
