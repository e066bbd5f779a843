"""Running unattended: a daily schedule, a sensor for new source files, notifications of
failed runs, and a freshness check per event source. The logic lives in
`crm_warehouse.operations` and `quality.freshness`; this module only wires it.

Schedule and file sensor are off until an operator turns them on (Dagster UI → Automation, or
`dagster schedule start crm_daily` / `dagster sensor start new_source_files`), so opening the
UI on a laptop never starts runs by surprise. The failure sensor is on: it only reports.
"""

from __future__ import annotations

import hashlib

import dagster as dg
from dagster_duckdb import DuckDBResource

from crm_warehouse.operations.notify import RunFailure, notifiers, notify
from crm_warehouse.operations.watch import arrivals
from crm_warehouse.settings import Settings
from orchestration.jobs import crm_pipeline
from quality.freshness import EVENT_DAYS, source_freshness


def daily_schedule(settings: Settings) -> dg.ScheduleDefinition:
    return dg.ScheduleDefinition(
        name="crm_daily",
        job=crm_pipeline,
        cron_schedule=settings.schedule_cron,
        execution_timezone=settings.source_timezone,
        description="The whole pipeline once a day (CRM_SCHEDULE_CRON, in the sources' zone).",
        default_status=dg.DefaultScheduleStatus.STOPPED,
    )


@dg.sensor(
    name="new_source_files",
    job=crm_pipeline,
    minimum_interval_seconds=60,
    description="Runs the pipeline when files land in (or grow in) the source folders.",
    default_status=dg.DefaultSensorStatus.STOPPED,
)
def new_source_files(
    context: dg.SensorEvaluationContext, settings: dg.ResourceParam[Settings]
) -> dg.SensorResult:
    found = arrivals(settings, context.cursor)
    if not found.files:
        return dg.SensorResult(skip_reason="no new source files", cursor=found.cursor)
    return dg.SensorResult(
        run_requests=[
            dg.RunRequest(
                # The same arrivals never start two runs.
                run_key=hashlib.sha1(found.cursor.encode()).hexdigest()[:16],
                tags={"crm/new_files": str(len(found.files))},
            )
        ],
        cursor=found.cursor,
    )


@dg.run_failure_sensor(
    name="notify_on_failure",
    description="Tells the log, and CRM_ALERT_WEBHOOK_URL if set, that a run failed.",
    default_status=dg.DefaultSensorStatus.RUNNING,
)
def notify_on_failure(
    context: dg.RunFailureSensorContext, settings: dg.ResourceParam[Settings]
) -> None:
    failure = RunFailure(
        job=context.dagster_run.job_name,
        run_id=context.dagster_run.run_id,
        message=context.failure_event.message or "failed",
        failed_steps=tuple(
            event.step_key for event in context.get_step_failure_events() if event.step_key
        ),
    )
    notify(failure, notifiers(settings.alert_webhook_url))


def _freshness_check(source: str, table: str) -> dg.AssetChecksDefinition:
    @dg.asset_check(
        asset=dg.AssetKey(table.split(".")),
        name="source_fresh",
        description="The source's newest event day is within CRM_FRESHNESS_MAX_LAG_DAYS (plus "
        "its delivery cadence: touches are weekly) of the newest day any source reached: a "
        "source that stopped arriving falls behind.",
    )
    def check(
        warehouse: DuckDBResource, settings: dg.ResourceParam[Settings]
    ) -> dg.AssetCheckResult:
        with warehouse.get_connection() as conn:
            found = source_freshness(conn, settings.freshness_max_lag_days)
        mine = next(item for item in found if item.source == source)
        return dg.AssetCheckResult(
            passed=mine.fresh,
            severity=dg.AssetCheckSeverity.WARN,
            metadata={
                "newest_day": str(mine.newest_day),
                "newest_day_of_any_source": str(mine.newest_overall),
                "lag_days": mine.lag_days if mine.lag_days is not None else -1,
                "allowed_lag_days": mine.allowed_lag_days,
            },
        )

    return check


FRESHNESS_CHECKS = [_freshness_check(source, table) for source, (table, _) in EVENT_DAYS.items()]
SENSORS = [new_source_files, notify_on_failure]
