"""Daily partitions of the event sources: which files and orders make a day, and a real
backfill of three days through the Dagster CLI on a generated CRM_HOME, re-run and then
followed by a run that names no day, with nothing loaded twice and every batch balanced."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from datetime import date, timedelta
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from crm_warehouse.ingest.contracts import (
    CALLS,
    CAMPAIGN_TOUCHES,
    SALES_ORDER_LINES,
    SALES_ORDERS,
    SourceContract,
)
from crm_warehouse.ingest.sources import file_day, on_days
from crm_warehouse.settings import Settings
from orchestration.assets.ingest import build_ingest_assets
from orchestration.build import build_definitions
from orchestration.checks import RECONCILIATION_CHECKS
from orchestration.partitions import (
    EVENT_ASSET_KEYS,
    REFERENCE_ASSET_KEYS,
    crm_event_backfill,
    day_keys,
    event_partitions,
)
from orchestration.run import dagster_instance
from quality.reconciliation import reconcile_latest_batch

REPO = Path(__file__).resolve().parents[2]
EVENT_CONTRACTS = (CALLS, CAMPAIGN_TOUCHES, SALES_ORDERS, SALES_ORDER_LINES)


def test_a_dated_export_belongs_to_the_day_in_its_name() -> None:
    assert file_day(Path("callcentre/calls_2026-10-05.csv")) == date(2026, 10, 5)
    assert file_day(Path("campaigns/touches_2026-10-05.csv")) == date(2026, 10, 5)
    assert file_day(Path("callcentre/tickets.jsonl")) is None
    assert file_day(Path("callcentre/calls_2026-02-30.csv")) is None


def test_a_range_of_days_includes_both_ends_and_only_dated_files() -> None:
    included = on_days(date(2026, 10, 5), date(2026, 10, 6))
    assert [
        name
        for name in ("calls_2026-10-04.csv", "calls_2026-10-05.csv", "calls_2026-10-06.csv")
        if included(Path(name))
    ] == ["calls_2026-10-05.csv", "calls_2026-10-06.csv"]
    assert not included(Path("campaigns.csv"))


def test_only_days_that_are_partitions_are_reported() -> None:
    partitions = event_partitions("Asia/Shanghai", start="2026-10-01")
    days = {date(2026, 9, 30), date(2026, 10, 2), date.today() + timedelta(days=1)}
    assert day_keys(days, partitions) == ["2026-10-02"]
    assert partitions.timezone == "Asia/Shanghai"


def _raw_and_quarantined(conn: duckdb.DuckDBPyConnection, contract: SourceContract) -> int:
    raw = conn.execute(f"select count(*) from raw.{contract.table}").fetchall()[0][0]
    held = conn.execute(
        "select count(*) from quarantine.rejected_rows where source = ?", [contract.source]
    ).fetchall()[0][0]
    return raw + held


def _data_lines(paths: list[Path]) -> int:
    return sum(len(path.read_bytes().splitlines()) - 1 for path in paths)  # less the header


def _assert_balanced(conn: duckdb.DuckDBPyConnection) -> None:
    for contract in EVENT_CONTRACTS:
        outcome = reconcile_latest_batch(conn, contract)
        assert outcome.passed, outcome


@pytest.mark.slow
def test_a_backfill_loads_its_days_once(sourced_home: Settings) -> None:
    settings = sourced_home
    calls_dir, campaigns_dir = settings.callcentre_dir, settings.campaigns_dir
    call_days = sorted(d for p in calls_dir.glob("calls_*.csv") if (d := file_day(p)))
    # Three days around a campaign's send day, so every event source has rows in the range.
    touch_day = next(
        day
        for p in sorted(campaigns_dir.glob("touches_*.csv"))
        if (day := file_day(p)) and call_days[0] < day < call_days[-1]
    )
    first, last = touch_day - timedelta(days=1), touch_day + timedelta(days=1)
    days = [first + timedelta(days=n) for n in range(3)]
    definitions = dg.Definitions.merge(
        build_definitions(settings), dg.Definitions(jobs=[crm_event_backfill])
    )
    instance = dagster_instance(settings)
    backfill_job = definitions.resolve_job_def("crm_event_backfill")
    quiet = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}

    # The campaigns, customers and products the events name, as the daily run loads them.
    references = backfill_job.execute_in_process(
        instance=instance,
        run_config=quiet,
        asset_selection=list(REFERENCE_ASSET_KEYS),
    )
    assert references.success

    # The backfill, as an operator runs it: one run for the whole range.
    selected = ",".join(key.to_user_string() for key in EVENT_ASSET_KEYS)
    backfill = subprocess.run(
        [
            str(Path(sys.executable).with_name("dagster")),
            "asset",
            "materialize",
            "-m",
            "orchestration.definitions",
            "--select",
            selected,
            "--partition-range",
            f"{first.isoformat()}...{last.isoformat()}",
        ],
        cwd=REPO,
        env={**os.environ, "CRM_HOME": str(settings.crm_home)},
        capture_output=True,
        text=True,
    )
    assert backfill.returncode == 0, backfill.stderr[-3000:]
    for key in EVENT_ASSET_KEYS:
        loaded = instance.get_materialized_partitions(key)
        assert loaded == {day.isoformat() for day in days}, key

    window = (f"{first} 00:00:00", f"{last + timedelta(days=1)} 00:00:00")
    with sqlite3.connect(settings.sources_dir / "sales" / "sales.db") as sales:
        orders_in_window = sales.execute(
            "select count(*) from orders where ordered_at >= ? and ordered_at < ?", window
        ).fetchone()[0]
        lines_in_window = sales.execute(
            "select count(*) from order_lines where order_id in "
            "(select id from orders where ordered_at >= ? and ordered_at < ?)",
            window,
        ).fetchone()[0]
    day_calls = [calls_dir / f"calls_{day}.csv" for day in days]
    expected = {
        CALLS: _data_lines(day_calls),
        CAMPAIGN_TOUCHES: _data_lines([campaigns_dir / f"touches_{touch_day}.csv"]),
        SALES_ORDERS: orders_in_window,
        SALES_ORDER_LINES: lines_in_window,
    }

    def assert_exactly_the_days(conn: duckdb.DuckDBPyConnection) -> None:
        for contract, rows in expected.items():
            assert _raw_and_quarantined(conn, contract) == rows, contract.source
        files = {
            row[0] for row in conn.execute("select distinct _source_file from raw.calls").fetchall()
        }
        assert files == {path.as_posix() for path in day_calls}
        ordered = conn.execute(
            "select min(ordered_at)::date, max(ordered_at)::date from raw.sales_orders"
        ).fetchall()[0]
        assert ordered == (first, last)
        assert conn.execute("select count(*) = count(distinct call_id) from raw.calls").fetchall()[
            0
        ][0]
        _assert_balanced(conn)

    with duckdb.connect(str(settings.warehouse_path), read_only=True) as conn:
        assert orders_in_window > 0 and expected[CAMPAIGN_TOUCHES] > 0
        assert_exactly_the_days(conn)
        # A window says nothing about other days: the incremental pull's place is kept.
        assert (
            conn.execute(
                "select count(*) from meta.watermarks where source in ('sales_orders', "
                "'sales_order_lines')"
            ).fetchall()[0][0]
            == 0
        )

    # The middle day again: the ledger and the upserts find nothing new.
    again = backfill_job.execute_in_process(
        instance=instance, run_config=quiet, partition_key=touch_day.isoformat()
    )
    assert again.success
    with duckdb.connect(str(settings.warehouse_path), read_only=True) as conn:
        assert_exactly_the_days(conn)

    # A run that names no day (as crm_pipeline's) loads every other day, none of these again.
    # The ledger's checks run with it (the quality gate has its own tests).
    everything = dg.materialize(
        [
            *build_ingest_assets(
                event_partitions(settings.source_timezone, settings.partitions_start)
            ),
            *RECONCILIATION_CHECKS,
        ],
        selection=[*REFERENCE_ASSET_KEYS, *EVENT_ASSET_KEYS],
        resources=definitions.resources,
        instance=instance,
        run_config=quiet,
    )
    assert everything.success
    with duckdb.connect(str(settings.warehouse_path), read_only=True) as conn:
        assert _raw_and_quarantined(conn, CALLS) == _data_lines(sorted(calls_dir.glob("calls_*")))
        assert conn.execute(
            "select count(*) = count(distinct call_id) from raw.calls where call_id is not null"
        ).fetchall()[0][0]
        _assert_balanced(conn)
    reported = instance.get_materialized_partitions(dg.AssetKey(["raw", "calls"]))
    assert reported == {day.isoformat() for day in call_days}
