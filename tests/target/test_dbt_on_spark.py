"""The whole dbt project (seeds, staging, the facts, the golden record, segments, KPIs,
campaigns, alerts, the scored marts) on a real local Spark (dbt-spark, `session`), from the
same raw, identity and score tables as the DuckDB run, gives the same tables row for row and
type for type. Spark keeps the membership history in a model of its own
(int_sales__membership_level_history), since dbt-spark snapshots only into Delta Lake,
Iceberg or Hudi; after one run both histories hold one version per member, so the changes
and alerts read from them agree too."""

from __future__ import annotations

import shutil
from pathlib import Path

import duckdb
import pytest

from crm_warehouse.settings import Settings
from crm_warehouse.target.spark import SparkDbt, build_on_spark, spark_table_folder
from orchestration.dbt_project import DBT_PROJECT_DIR, dbt_executable

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("spark")]

SPARK_ONLY = ("intermediate", "int_sales__membership_level_history")


def _columns(conn: duckdb.DuckDBPyConnection, relation: str) -> list[tuple[str, str]]:
    return [row[:2] for row in conn.execute(f"describe select * from {relation}").fetchall()]


def test_the_dbt_project_on_spark_equals_duckdbs_row_for_row(
    resolved_home: Settings, tmp_path: Path
) -> None:
    home = tmp_path / "crm"
    home.mkdir()
    # The tables the DuckDB run's Python steps wrote (raw, identity, ml); everything dbt
    # builds is built again, on Spark, over them, and replaces DuckDB's in this copy.
    shutil.copyfile(resolved_home.warehouse_path, home / "warehouse.duckdb")
    dbt = SparkDbt(
        executable=dbt_executable(),
        project_dir=DBT_PROJECT_DIR,
        target_path=home / "dbt" / "target",
        crm_home=home,
    )
    with duckdb.connect(str(home / "warehouse.duckdb")) as conn:
        mirrored = build_on_spark(conn, dbt)

    for expected in [
        ("reference", "china_cities"),
        ("staging", "stg_sales__orders"),
        ("staging", "stg_forms__submissions"),
        ("intermediate", "int_identity__records"),
        ("marts", "fct_orders"),
        ("marts", "fct_service_kpis_daily"),
        ("marts", "dim_customers"),
        ("marts", "customer_segments"),
        ("marts", "fct_customer_alerts"),
        ("marts", "customer_care_list"),
        SPARK_ONLY,
    ]:
        assert mirrored.get(expected, 0) > 0, expected
    # Spark's own tables are Parquet under CRM_HOME, where the profile puts its warehouse.
    assert list(spark_table_folder(home, "marts", "fct_orders").glob("*.parquet"))

    with duckdb.connect(str(resolved_home.warehouse_path), read_only=True) as on_duckdb:
        on_duckdb.execute(f"attach '{home / 'warehouse.duckdb'}' as on_spark (read_only)")
        for schema, table in set(mirrored) - {SPARK_ONLY}:
            ours, theirs = f"{schema}.{table}", f"on_spark.{schema}.{table}"
            columns = _columns(on_duckdb, ours)
            assert _columns(on_duckdb, theirs) == columns, table
            rows = on_duckdb.execute(f"select count(*) from {ours}").fetchone()[0]
            assert mirrored[(schema, table)] == rows, table
            names = ", ".join(f'"{name}"' for name, _ in columns)
            for left, right in ((ours, theirs), (theirs, ours)):
                differing = on_duckdb.execute(
                    f"select count(*) from (select {names} from {left} "
                    f"except all select {names} from {right})"
                ).fetchone()[0]
                assert differing == 0, f"{table}: {differing} rows of {left} not in {right}"
