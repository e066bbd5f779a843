"""Run the pipeline in this process, recorded in the Dagster instance under `CRM_HOME`, so
its runs show in the UI (`crm ui`) like runs launched there."""

from __future__ import annotations

import os
from dataclasses import dataclass

import dagster as dg

from crm_warehouse.settings import Settings
from orchestration.assets.dbt import DBT_BUILD_STEPS
from orchestration.build import build_definitions


@dataclass(frozen=True)
class RunOutcome:
    run_id: str
    success: bool
    failed_steps: list[str]
    failed_checks: list[str]
    warned_checks: list[str]
    # Steps Dagster skipped because a step before them succeeded without materialising
    # what they read; Dagster still calls such a run a success. (Behind a failed step or
    # blocking check, the steps after it are not skipped: they never start.)
    skipped_steps: list[str]


DAGSTER_YAML = """\
# Dagster's instance under CRM_HOME: runs, event logs and schedules in SQLite files here.
# Usage statistics stay off for a warehouse of customer data; set enabled: true to share them.
telemetry:
  enabled: false
# The warehouse takes one writer at a time: queued runs (a backfill's days, the schedule, the
# sensor) start one after another, never side by side on the DuckDB file lock.
concurrency:
  runs:
    max_concurrent_runs: 1
"""


def dagster_instance(settings: Settings) -> dg.DagsterInstance:
    settings.dagster_home.mkdir(parents=True, exist_ok=True)
    config = settings.dagster_home / "dagster.yaml"
    if not config.exists():
        config.write_text(DAGSTER_YAML, encoding="utf-8")
    os.environ["DAGSTER_HOME"] = str(settings.dagster_home)
    return dg.DagsterInstance.get()


def run_pipeline(
    settings: Settings,
    job_name: str = "crm_pipeline",
    *,
    retrain_identity: bool = False,
    full_refresh: bool = False,
    scoring: dict[str, object] | None = None,
) -> RunOutcome:
    """Materialise every asset of `job_name`; raises nothing on failure, reports it.
    `retrain_identity` refits the identity model and re-resolves every record;
    `full_refresh` rebuilds dbt's incremental models from all their input; `scoring` is
    the scoring asset's config (`ScoringRunConfig`: churn_window_days, …)."""
    definitions = build_definitions(settings, reparse_dbt=True)
    job = definitions.resolve_job_def(job_name)
    instance = dagster_instance(settings)
    # The console shows warnings and errors only; every event is in the instance for the UI.
    run_config: dict[str, object] = {
        "loggers": {"console": {"config": {"log_level": "WARNING"}}},
    }
    ops: dict[str, object] = {}
    if retrain_identity:
        ops["identity_resolution"] = {"config": {"retrain": True}}
    if full_refresh:
        for dbt_op in DBT_BUILD_STEPS:
            ops[dbt_op] = {"config": {"full_refresh": True}}
    if scoring:
        ops["customer_scoring"] = {"config": scoring}
    if ops:
        run_config["ops"] = ops
    result = job.execute_in_process(instance=instance, raise_on_error=False, run_config=run_config)
    failed_steps = [
        event.step_key or ""
        for event in result.all_events
        if event.event_type == dg.DagsterEventType.STEP_FAILURE
    ]
    skipped_steps = [
        event.step_key or ""
        for event in result.all_events
        if event.event_type == dg.DagsterEventType.STEP_SKIPPED
    ]
    failed_evaluations = [
        evaluation
        for evaluation in (
            event.event_specific_data
            for event in result.all_events
            if event.event_type == dg.DagsterEventType.ASSET_CHECK_EVALUATION
        )
        if not evaluation.passed
    ]

    def names(severity: dg.AssetCheckSeverity) -> list[str]:
        return [
            f"{evaluation.asset_key.to_user_string()}:{evaluation.check_name}"
            for evaluation in failed_evaluations
            if evaluation.severity == severity
        ]

    # A failed check of severity WARN is reported, not a failure of the run.
    return RunOutcome(
        result.run_id,
        result.success,
        failed_steps,
        names(dg.AssetCheckSeverity.ERROR),
        names(dg.AssetCheckSeverity.WARN),
        skipped_steps,
    )
