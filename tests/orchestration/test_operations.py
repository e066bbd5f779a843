"""Operations on real parts: the file sensor on real source folders, failure notifications
posted to a real local HTTP receiver from a real failed Dagster run, the freshness check on
a real pipeline warehouse, and the schedule's settings."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import dagster as dg
import duckdb
import pytest

from crm_warehouse.generate import append_day
from crm_warehouse.operations.notify import LogNotifier, RunFailure, WebhookNotifier, notify
from crm_warehouse.settings import Settings
from orchestration.assets.ingest import sales_system_pull
from orchestration.operations import daily_schedule, new_source_files, notify_on_failure
from quality.freshness import source_freshness


@pytest.fixture
def receiver() -> Iterator[tuple[str, list[dict]]]:
    """A local webhook endpoint that keeps what it is sent."""
    received: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers["Content-Length"])
            received.append(json.loads(self.rfile.read(length).decode("utf-8")))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/hook", received
    finally:
        server.shutdown()


def test_the_sensor_starts_one_run_per_arrival_and_none_without(sourced_home: Settings) -> None:
    first = new_source_files(dg.build_sensor_context(resources={"settings": sourced_home}))
    assert len(first.run_requests) == 1
    assert int(first.run_requests[0].tags["crm/new_files"]) > 20
    idle = new_source_files(
        dg.build_sensor_context(cursor=first.cursor, resources={"settings": sourced_home})
    )
    assert idle.run_requests == [] and idle.skip_reason is not None

    append_day(sourced_home.sources_dir)  # new daily files, and the ticket log grows
    arrived = new_source_files(
        dg.build_sensor_context(cursor=first.cursor, resources={"settings": sourced_home})
    )
    assert len(arrived.run_requests) == 1
    assert arrived.run_requests[0].run_key != first.run_requests[0].run_key
    assert 2 <= int(arrived.run_requests[0].tags["crm/new_files"]) < 20


def test_a_failed_run_is_posted_to_the_webhook_and_logged(
    receiver: tuple[str, list[dict]], crm_home: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    url, received = receiver

    @dg.op
    def pull_from_a_dead_system() -> None:
        raise ConnectionError("sales system went away")

    @dg.job
    def doomed() -> None:
        pull_from_a_dead_system()

    instance = dg.DagsterInstance.ephemeral()
    result = doomed.execute_in_process(instance=instance, raise_on_error=False)
    assert not result.success
    failure_event = next(
        event for event in result.all_events if event.event_type_value == "PIPELINE_FAILURE"
    )
    settings = Settings(**{**crm_home.__dict__, "alert_webhook_url": url})
    context = dg.build_run_status_sensor_context(
        sensor_name="notify_on_failure",
        dagster_event=failure_event,
        dagster_instance=instance,
        dagster_run=result.dagster_run,
        resources={"settings": settings},
    ).for_run_failure()
    with caplog.at_level("ERROR", logger="crm_warehouse.alerts"):
        notify_on_failure(context)
    assert len(received) == 1
    assert received[0]["job"] == "doomed" and received[0]["run_id"] == result.run_id
    assert received[0]["failed_steps"] == ["pull_from_a_dead_system"]
    assert "failed" in received[0]["text"]
    assert result.run_id in caplog.text


def test_a_dead_webhook_never_hides_the_failure_from_the_log(
    caplog: pytest.LogCaptureFixture,
) -> None:
    failure = RunFailure("crm_pipeline", "r1", "boom")
    with caplog.at_level("ERROR", logger="crm_warehouse.alerts"):
        errors = notify(failure, [WebhookNotifier("http://127.0.0.1:9/none", 1), LogNotifier()])
    assert len(errors) == 1 and "WebhookNotifier" in errors[0]
    assert "run r1 of crm_pipeline failed: boom" in caplog.text


@pytest.mark.slow
def test_a_source_that_stopped_arriving_is_flagged(own_copy: Settings) -> None:
    with duckdb.connect(str(own_copy.warehouse_path)) as conn:
        before = {f.source: f.fresh for f in source_freshness(conn, 2)}
        conn.execute(
            "delete from raw.calls where queued_at >= (select max(queued_at) from raw.calls) "
            "- interval 5 day"
        )
        after = {f.source: f for f in source_freshness(conn, 2)}
    assert all(before.values()), before
    assert not after["calls"].fresh and after["calls"].lag_days >= 4
    assert all(f.fresh for source, f in after.items() if source != "calls")


def test_the_schedule_and_the_sales_retries_come_from_settings(crm_home: Settings) -> None:
    settings = Settings(**{**crm_home.__dict__, "schedule_cron": "30 5 * * *"})
    schedule = daily_schedule(settings)
    assert schedule.cron_schedule == "30 5 * * *"
    assert schedule.execution_timezone == "Asia/Shanghai"
    assert schedule.job_name == "crm_pipeline"
    policy = sales_system_pull.op.retry_policy
    assert policy is not None and policy.max_retries == 3
    assert policy.backoff == dg.Backoff.EXPONENTIAL
