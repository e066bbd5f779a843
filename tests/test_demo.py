"""`crm demo` end to end on a fresh CRM_HOME: generate, materialise every asset through
Dagster (ingest, dbt build), summarise; then `crm run` again changes nothing."""

from __future__ import annotations

import dagster as dg
import duckdb
import pytest

from crm_warehouse.cli import main
from crm_warehouse.generate import append_day
from crm_warehouse.settings import Settings
from orchestration.run import dagster_instance

pytestmark = pytest.mark.slow


def _batches(settings: Settings) -> int:
    with duckdb.connect(str(settings.warehouse_path), read_only=True) as conn:
        return conn.execute("select count(*) from meta.batches").fetchall()[0][0]


def test_demo_runs_everything_then_reruns_change_nothing(
    crm_home: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["demo", "--customers", "1500", "--days", "15"]) == 0
    printed = capsys.readouterr().out
    assert "succeeded" in printed
    assert "Rows per layer" in printed and "stg_forms__submissions" in printed
    assert "Quarantined rows by reason" in printed
    assert "dagster dev -m orchestration.definitions" in printed

    instance = dagster_instance(crm_home)
    runs = instance.get_run_records()
    assert len(runs) == 1 and runs[0].dagster_run.status == dg.DagsterRunStatus.SUCCESS
    materialized = instance.get_latest_materialization_event(dg.AssetKey(["raw", "calls"]))
    metadata = materialized.asset_materialization.metadata
    assert (
        metadata["rows_in"].value
        == (metadata["rows_loaded"].value + metadata["rows_quarantined"].value)
        > 0
    )
    check = instance.event_log_storage.get_latest_asset_check_execution_by_key(
        [dg.AssetCheckKey(dg.AssetKey(["raw", "calls"]), "rows_reconcile")]
    )
    evaluation = next(iter(check.values())).event.dagster_event.event_specific_data
    assert evaluation.passed

    batches = _batches(crm_home)
    assert main(["run"]) == 0
    assert _batches(crm_home) == batches  # nothing new, nothing loaded

    append_day(crm_home.sources_dir)
    assert main(["run"]) == 0
    assert _batches(crm_home) > batches


def test_demo_refuses_a_home_that_already_has_sources(crm_home: Settings) -> None:
    crm_home.sources_dir.mkdir(parents=True)
    (crm_home.sources_dir / "something").write_text("x")
    assert main(["demo", "--customers", "100", "--days", "2"]) == 2
