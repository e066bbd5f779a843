"""The marts on a real pipeline run: every customer segmented with bilingual labels, KPIs
and campaign figures that reconcile with their facts, alerts that find planted behaviour,
incremental runs that equal a full rebuild, and dbt's unit tests."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import duckdb
import pytest

from crm_warehouse.alert_quality import alert_quality
from crm_warehouse.generate import append_day
from crm_warehouse.settings import Settings
from orchestration.assets.dbt import PRODUCTION_BUILD, dbt_cli_selection
from orchestration.dbt_project import DBT_PROJECT_DIR
from orchestration.run import run_pipeline

pytestmark = pytest.mark.slow

INCREMENTAL_MODELS = [
    "staging.stg_sales__orders",
    "staging.stg_sales__order_lines",
    "staging.stg_sales__customers",
    "staging.stg_callcentre__calls",
    "staging.stg_callcentre__tickets",
    "staging.stg_forms__submissions",
    "staging.stg_campaigns__touches",
    "marts.fct_orders",
    "marts.fct_calls",
    "marts.fct_campaign_touches",
]


def _read(settings: Settings) -> duckdb.DuckDBPyConnection:
    return duckdb.connect(str(settings.warehouse_path), read_only=True)


def _scalar(conn: duckdb.DuckDBPyConnection, sql: str) -> object:
    return conn.execute(sql).fetchall()[0][0]


def test_every_customer_has_segments_with_chinese_and_english_labels(
    resolved_home: Settings,
) -> None:
    with _read(resolved_home) as conn:
        customers = _scalar(conn, "select count(*) from marts.dim_customers")
        rows = conn.execute(
            """
            select count(*), count(value_tier_zh), count(lifecycle_stage_zh),
                   count(rfm_segment_zh), count(service_strategy_zh),
                   count(distinct value_tier), count(distinct lifecycle_stage)
            from marts.customer_segments
            """
        ).fetchall()[0]
        labels = dict(
            conn.execute(
                "select distinct value_tier, value_tier_zh || ' / ' || value_tier_en "
                "from marts.customer_segments"
            ).fetchall()
        )
    assert rows[0] == customers > 3_000
    assert rows[1:5] == (customers,) * 4
    assert rows[5] == 4 and rows[6] >= 4
    assert labels["diamond"] == "钻石客户 / Diamond"


def test_service_kpis_and_campaign_figures_reconcile_with_their_facts(
    resolved_home: Settings,
) -> None:
    with _read(resolved_home) as conn:
        offered, answered, abandoned, tickets = conn.execute(
            "select sum(calls_offered), sum(calls_answered), sum(calls_abandoned), "
            "sum(tickets_opened) from marts.fct_service_kpis_daily"
        ).fetchall()[0]
        calls = _scalar(conn, "select count(*) from marts.fct_calls")
        staged_tickets = _scalar(conn, "select count(*) from staging.stg_callcentre__tickets")
        reached = _scalar(conn, "select sum(reached) from marts.fct_campaign_performance")
        touches = _scalar(conn, "select count(*) from marts.fct_campaign_touches")
        bad_rates = _scalar(
            conn,
            "select count(*) from marts.fct_service_kpis_daily "
            "where answer_rate not between 0 and 1 or service_level not between 0 and 1 "
            "or csat not between 1 and 5",
        )
    assert offered == calls > 0 and answered + abandoned == offered
    assert tickets == staged_tickets > 0
    assert reached == touches > 0
    assert bad_rates == 0


def test_alerts_find_the_planted_complainers(resolved_home: Settings) -> None:
    with _read(resolved_home) as conn:
        quality = alert_quality(conn, resolved_home.truth_dir)
    complaints = quality["complaints"]
    assert complaints["planted"] >= 30
    assert complaints["precision"] >= 0.9
    assert complaints["recall"] >= 0.3


def _fingerprint(conn: duckdb.DuckDBPyConnection, table: str) -> str:
    rows = conn.execute(
        f"select * exclude (loaded_at) from {table} order by all"
        if "loaded_at" in [c[0] for c in conn.execute(f"describe {table}").fetchall()]
        else f"select * from {table} order by all"
    ).fetchall()
    return hashlib.sha256(repr(rows).encode()).hexdigest()


ALERTS_PER_DAY = (
    "select alert_date, alert_kind, count(*) from marts.fct_customer_alerts "
    "group by all order by all"
)


def test_an_incremental_day_equals_a_full_rebuild(own_copy: Settings) -> None:
    append_day(own_copy.sources_dir)
    assert run_pipeline(own_copy).success
    with _read(own_copy) as conn:
        incremental = {t: _fingerprint(conn, t) for t in INCREMENTAL_MODELS}
        grew = _scalar(conn, "select max(ordered_on) from marts.fct_orders")
        alert_days = conn.execute(ALERTS_PER_DAY).fetchall()
    assert run_pipeline(own_copy, full_refresh=True).success
    with _read(own_copy) as conn:
        rebuilt = {t: _fingerprint(conn, t) for t in INCREMENTAL_MODELS}
        assert _scalar(conn, "select max(ordered_on) from marts.fct_orders") == grew
        # The alert history is no rebuildable model: a full refresh keeps both days.
        assert conn.execute(ALERTS_PER_DAY).fetchall() == alert_days
    assert incremental == rebuilt
    assert len({day for day, _, _ in alert_days}) == 2


def test_the_dbt_unit_tests_pass_on_a_real_build_and_stay_out_of_production_builds(
    own_copy: Settings,
) -> None:
    invocations = own_copy.crm_home / "dbt" / "target" / "invocations"
    ran = {
        result["unique_id"].split(".")[0]
        for folder in invocations.iterdir()
        for result in json.loads((folder / "run_results.json").read_text("utf-8"))["results"]
    }
    assert "unit_test" not in ran and {"model", "test"} <= ran
    manifest = json.loads(
        (own_copy.crm_home / "dbt" / "target" / "manifest.json").read_text("utf-8")
    )
    defined = {name for name in manifest["unit_tests"]}
    assert len(defined) >= 8
    target = own_copy.crm_home / "dbt" / "target" / "unit"
    result = _dbt(own_copy, target, "test", "--select", "test_type:unit")
    assert result.returncode == 0, result.stdout[-4000:]
    results = json.loads((target / "run_results.json").read_text("utf-8"))["results"]
    assert {r["unique_id"] for r in results} == defined
    assert all(r["status"] == "pass" for r in results)


def _dbt(settings: Settings, target: Path, *arguments: str) -> subprocess.CompletedProcess[str]:
    """dbt on the project, against `settings`' home, with its artefacts in `target`."""
    dbt = shutil.which("dbt") or str(Path(sys.executable).with_name("dbt"))
    return subprocess.run(
        [
            dbt,
            *arguments,
            "--project-dir",
            str(DBT_PROJECT_DIR),
            "--profiles-dir",
            str(DBT_PROJECT_DIR),
            "--target-path",
            str(target),
        ],
        env={**os.environ, "CRM_HOME": str(settings.crm_home)},
        capture_output=True,
        text=True,
        check=False,
    )


def _build_after_identity(settings: Settings, target: Path) -> subprocess.CompletedProcess[str]:
    """The dbt parts after identity resolution (marts, then scored marts), as the pipeline
    builds them, straight through dbt."""
    for part in ("dbt_marts", "dbt_scored"):
        result = _dbt(settings, target, *PRODUCTION_BUILD, *dbt_cli_selection(part))
        if result.returncode != 0:
            return result
    return result


def test_alert_history_follows_a_merge_to_the_survivor_and_forgets_the_erased(
    own_copy: Settings, tmp_path: Path
) -> None:
    with duckdb.connect(str(own_copy.warehouse_path)) as conn:
        younger, kind, raised_on = conn.execute(
            "select customer_id, alert_kind, alert_date from marts.fct_customer_alerts "
            "order by customer_id desc limit 1"
        ).fetchall()[0]
        older = conn.execute(
            "select min(customer_id) from marts.dim_customers where customer_id < ?", [younger]
        ).fetchall()[0][0]
        earlier = raised_on - timedelta(days=1)
        # Yesterday's history: an alert for the customer about to be merged away, and one
        # for a customer since erased (no longer in dim_customers).
        conn.execute(
            "insert into marts.fct_customer_alerts "
            "select ? as alert_date, * exclude (alert_date) from marts.fct_customer_alerts "
            "where customer_id = ? and alert_kind = ?",
            [earlier, younger, kind],
        )
        conn.execute(
            "insert into marts.fct_customer_alerts "
            "select ? as alert_date, 'CU999999999' as customer_id, * exclude (alert_date, "
            "customer_id) from marts.fct_customer_alerts where customer_id = ? "
            "and alert_kind = ?",
            [earlier, younger, kind],
        )
        # Identity merges the younger id into the older, as new evidence would.
        conn.execute(
            "update identity.customers set merged_into = ?, merged_at = now() "
            "where customer_id = ?",
            [older, younger],
        )
        conn.execute(
            "update identity.records set customer_id = ? where customer_id = ?", [older, younger]
        )
    result = _build_after_identity(own_copy, tmp_path / "target")
    # dbt's data tests ran too: every alert's customer_id is in dim_customers.
    assert result.returncode == 0, result.stdout[-4000:]
    with _read(own_copy) as conn:
        rows = conn.execute(
            "select customer_id, alert_date, alert_kind from marts.fct_customer_alerts "
            "where alert_date = ? and customer_id in (?, ?, 'CU999999999')",
            [earlier, older, younger],
        ).fetchall()
        assert (older, earlier, kind) in rows
        assert {row[0] for row in rows} == {older}
        assert (
            _scalar(
                conn,
                "select count(*) from marts.fct_customer_alerts where customer_id not in "
                "(select customer_id from marts.dim_customers)",
            )
            == 0
        )


def _golden_records(conn: duckdb.DuckDBPyConnection, without: str) -> str:
    rows = conn.execute(
        "select * from marts.dim_customers where customer_id <> ? order by customer_id", [without]
    ).fetchall()
    return hashlib.sha256(repr(rows).encode()).hexdigest()


def test_an_incremental_golden_record_equals_a_full_rebuild_after_merges_moves_and_updates(
    own_copy: Settings, tmp_path: Path
) -> None:
    with duckdb.connect(str(own_copy.warehouse_path)) as conn:
        several = [
            row[0]
            for row in conn.execute(
                "select customer_id from marts.dim_customers where source_record_count >= 2 "
                "order by customer_id limit 5"
            ).fetchall()
        ]
        survivor, merged_away, mover, erased, untouched = several
        regular_member = conn.execute(
            "select d.customer_id, d.member_no from marts.dim_customers as d "
            "where d.membership_level = 'regular' and not list_contains(?, d.customer_id) "
            "order by d.customer_id limit 1",
            [several],
        ).fetchall()[0]
        # Identity merges one customer into another (records follow, linked_at unchanged),
        # moves a record of a third to a fourth (linked again), forgets a fifth's records.
        conn.execute(
            "update identity.records set customer_id = ? where customer_id = ?",
            [survivor, merged_away],
        )
        conn.execute(
            "update identity.customers set merged_into = ?, merged_at = now() "
            "where customer_id = ?",
            [survivor, merged_away],
        )
        conn.execute(
            "update identity.records set customer_id = ?, linked_at = now() "
            "where record_id = (select min(record_id) from identity.records "
            "where customer_id = ?)",
            [untouched, mover],
        )
        for table in ("identity.records", "identity.customers"):
            conn.execute(f"delete from {table} where customer_id = ?", [erased])
        # The sales system upgrades a member: staging loads the row again.
        conn.execute(
            "update staging.stg_sales__customers set membership_level = 'diamond', "
            "loaded_at = cast(now() at time zone 'UTC' as timestamp) where member_no = ?",
            [regular_member[1]],
        )
        # A customer no input names: a normal run leaves the built row as it is.
        bystander = conn.execute(
            "select min(customer_id) from marts.dim_customers "
            "where not list_contains(?, customer_id) and customer_id <> ?",
            [several, regular_member[0]],
        ).fetchall()[0][0]
        conn.execute(
            "update marts.dim_customers set full_name = 'not rebuilt' where customer_id = ?",
            [bystander],
        )
    result = _build_after_identity(own_copy, tmp_path / "target")
    assert result.returncode == 0, result.stdout[-4000:]
    with _read(own_copy) as conn:
        incremental = _golden_records(conn, without=bystander)
        ids = {
            row[0] for row in conn.execute("select customer_id from marts.dim_customers").fetchall()
        }
        assert survivor in ids and mover in ids and untouched in ids
        assert merged_away not in ids and erased not in ids
        assert (
            _scalar(
                conn,
                "select membership_level from marts.dim_customers "
                f"where customer_id = '{regular_member[0]}'",
            )
            == "diamond"
        )
        assert (
            _scalar(
                conn, f"select full_name from marts.dim_customers where customer_id = '{bystander}'"
            )
            == "not rebuilt"
        )
    rebuilt = _dbt(
        own_copy, tmp_path / "rebuilt", "run", "--select", "dim_customers", "--full-refresh"
    )
    assert rebuilt.returncode == 0, rebuilt.stdout[-4000:]
    with _read(own_copy) as conn:
        assert _golden_records(conn, without=bystander) == incremental
        assert (
            _scalar(
                conn, f"select full_name from marts.dim_customers where customer_id = '{bystander}'"
            )
            != "not rebuilt"
        )
        counts = dict(
            conn.execute(
                "select customer_id, count(*) from identity.records group by all"
            ).fetchall()
        )
        assert counts == dict(
            conn.execute(
                "select customer_id, source_record_count from marts.dim_customers"
            ).fetchall()
        )
