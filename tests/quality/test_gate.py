"""The great-expectations gate on a real pipeline run: it passes on good data, a bad batch
fails it with reasons, and a failed gate leaves the last good serving snapshot live."""

from __future__ import annotations

import json

import dagster as dg
import duckdb
import pytest

from crm_warehouse.publish.serving import current
from crm_warehouse.settings import Settings
from orchestration.run import dagster_instance, run_pipeline
from quality.gate import (
    GATES,
    GATES_BY_TABLE,
    baseline,
    data_docs_index,
    expected_columns,
    validate,
)

pytestmark = pytest.mark.slow


def test_every_gate_passed_on_the_pipeline_run_with_results_and_data_docs(
    resolved_home: Settings,
) -> None:
    instance = dagster_instance(resolved_home)
    for gate in GATES:
        key = dg.AssetCheckKey(dg.AssetKey(gate.table.split(".")), "gx_blocking")
        record = instance.event_log_storage.get_latest_asset_check_execution_by_key([key])[key]
        evaluation = record.event.dagster_event.event_specific_data  # type: ignore[union-attr]
        assert evaluation.passed, (gate.table, evaluation.metadata)
    results = (resolved_home.reports_dir / "quality" / "results.jsonl").read_text(encoding="utf-8")
    entries = [json.loads(line) for line in results.splitlines()]
    assert {entry["table"] for entry in entries} == {gate.table for gate in GATES}
    # GX keeps the result of each validation where something failed, warnings included
    # (rendered in the data docs: tested below), and only those: the passing ones are the
    # lines of results.jsonl.
    failed = {e["table"] for e in entries if not (e["blocking_passed"] and e["warnings_passed"])}
    stored = resolved_home.reports_dir / "quality" / "gx" / "uncommitted" / "validations"
    suites = {path.relative_to(stored).parts[0] for path in stored.rglob("*.json")}
    assert suites == failed


def test_negative_amounts_and_a_duplicated_key_fail_the_blocking_half(
    own_copy: Settings,
) -> None:
    with own_copy.connect_warehouse() as conn:
        conn.execute("update marts.fct_orders set order_amount = -5 where order_id % 7 = 1")
        conn.execute("insert into marts.fct_orders select * from marts.fct_orders limit 1")
        outcome = validate(conn, GATES_BY_TABLE["marts.fct_orders"], own_copy.reports_dir)
        baseline_rows = conn.execute(
            "select count(*) from quality.gate_history where table_name = 'marts.fct_orders'"
        ).fetchall()[0][0]
    failed = {(f["expectation"], f["column"]) for f in outcome.failures if f["blocking"]}
    assert not outcome.blocking_passed
    assert ("expect_column_values_to_be_unique", "order_id") in failed
    assert ("expect_column_values_to_be_between", "order_amount") in failed
    # A bad batch never becomes the baseline the next run is compared with.
    assert baseline_rows == 1
    # The failure is rendered in the data docs the check links to.
    index = data_docs_index(own_copy.reports_dir).read_text(encoding="utf-8")
    assert "marts.fct_orders" in index
    # Its stored result names the batch by its load time, without GX's MD5 over every row.
    stored = own_copy.reports_dir / "quality" / "gx" / "uncommitted" / "validations"
    newest = max((stored / "marts" / "fct_orders").rglob("*.json"), key=lambda p: p.stat().st_mtime)
    markers = json.loads(newest.read_text(encoding="utf-8"))["meta"]["batch_markers"]
    assert "ge_load_time" in markers
    assert "pandas_data_fingerprint" not in markers


def test_half_the_orders_missing_stops_the_run_and_keeps_the_last_snapshot(
    own_copy: Settings,
) -> None:
    live = current(own_copy.serving_dir)
    assert live is not None
    with duckdb.connect(str(own_copy.warehouse_path)) as conn:
        conn.execute("delete from marts.fct_orders where order_id % 2 = 0")
    outcome = run_pipeline(own_copy)
    assert not outcome.success
    assert "marts/fct_orders:gx_blocking" in outcome.failed_checks
    assert current(own_copy.serving_dir) == live
    results = (own_copy.reports_dir / "quality" / "results.jsonl").read_text(encoding="utf-8")
    latest = [json.loads(line) for line in results.splitlines()][-len(GATES) :]
    orders = next(r for r in latest if r["table"] == "marts.fct_orders")
    assert orders["failures"][0]["expectation"] == "expect_table_row_count_to_be_between"


def test_a_bad_raw_batch_and_a_changed_raw_schema_fail_before_dbt_reads_them(
    own_copy: Settings,
) -> None:
    with own_copy.connect_warehouse() as conn:
        conn.execute("insert into raw.calls select * from raw.calls limit 3")
        conn.execute("update raw.calls set ended_at = queued_at - interval 1 hour where rowid < 5")
        conn.execute("alter table raw.calls add column caller_name varchar")
        outcome = validate(
            conn,
            GATES_BY_TABLE["raw.calls"],
            own_copy.reports_dir,
            columns=expected_columns("raw.calls", None),
        )
    failed = {(f["expectation"], f["column"]) for f in outcome.failures if f["blocking"]}
    assert failed == {
        ("expect_column_values_to_be_unique", "call_id"),
        ("expect_column_values_to_be_in_set", "ends_after_queueing"),
        ("expect_table_columns_to_match_set", None),
    }


def test_a_new_campaign_snapshot_passes_and_a_campaign_twice_in_one_fails(
    own_copy: Settings,
) -> None:
    gate = GATES_BY_TABLE["raw.campaigns"]
    with own_copy.connect_warehouse() as conn:
        # The next snapshot repeats every campaign, as the source rewrites its whole file.
        conn.execute(
            "insert into raw.campaigns select * replace ('next-snapshot' as _batch_id) "
            "from raw.campaigns"
        )
        passed = validate(conn, gate, own_copy.reports_dir)
        conn.execute(
            "insert into raw.campaigns select * from raw.campaigns "
            "where _batch_id = 'next-snapshot' limit 1"
        )
        failed = validate(conn, gate, own_copy.reports_dir)
    assert passed.blocking_passed, passed.failures
    assert not failed.blocking_passed
    assert {(f["expectation"], f["blocking"]) for f in failed.failures} == {
        ("expect_compound_columns_to_be_unique", True)
    }


def test_after_a_good_run_only_the_rows_loaded_since_are_validated(own_copy: Settings) -> None:
    gate = GATES_BY_TABLE["raw.calls"]
    later = "(select max(_loaded_at) from raw.calls) + interval 1 hour"
    with own_copy.connect_warehouse() as conn:
        calls = conn.execute("select count(*) from raw.calls").fetchall()[0][0]
        # A later load of three good calls.
        conn.execute(
            f"insert into raw.calls select * replace (call_id || '-later' as call_id, "
            f"{later} as _loaded_at) from raw.calls order by call_id limit 3"
        )
        good = validate(conn, gate, own_copy.reports_dir)
        # The next load: a call validated before, again, and a call ending before it queued.
        conn.execute(
            f"insert into raw.calls select * replace ({later} as _loaded_at) "
            "from raw.calls order by call_id limit 1"
        )
        conn.execute(
            f"insert into raw.calls select * replace (call_id || '-bad' as call_id, "
            f"queued_at - interval 1 minute as ended_at, {later} as _loaded_at) "
            "from raw.calls order by call_id limit 1"
        )
        bad = validate(conn, gate, own_copy.reports_dir)
        # Rows loaded before the last good validation deleted, more than were loaded since:
        # the table shrank, so the whole of it is validated again.
        conn.execute(
            "delete from raw.calls where call_id in (select call_id from raw.calls "
            "where _loaded_at <= ? order by call_id desc limit 3)",
            [good.loaded_after],
        )
        whole = validate(conn, gate, own_copy.reports_dir)
    assert good.blocking_passed, good.failures
    assert (good.row_count, good.rows_checked) == (calls + 3, 3)
    assert good.loaded_after is not None
    assert not bad.blocking_passed
    assert (bad.row_count, bad.rows_checked) == (calls + 5, 2)
    assert {f["column"] for f in bad.failures if f["blocking"]} == {
        "call_id_is_new",
        "ends_after_queueing",
    }
    assert whole.loaded_after is None
    assert whole.rows_checked == whole.row_count == calls + 2
    assert {(f["expectation"], f["column"]) for f in whole.failures if f["blocking"]} == {
        ("expect_column_values_to_be_unique", "call_id"),
        ("expect_column_values_to_be_in_set", "ends_after_queueing"),
    }


def test_an_order_updated_in_place_is_validated_with_the_new_rows(own_copy: Settings) -> None:
    # The sales pull updates orders in place: the row gets a new load time and leaves the
    # rows loaded before. Those left are a part of what was validated, so only the updated
    # row is read, not the whole table.
    gate = GATES_BY_TABLE["raw.sales_orders"]
    later = "(select max(_loaded_at) from raw.sales_orders) + interval 1 hour"
    with own_copy.connect_warehouse() as conn:
        orders = conn.execute("select count(*) from raw.sales_orders").fetchall()[0][0]
        first, second = (
            row[0]
            for row in conn.execute(
                "select id from raw.sales_orders order by id limit 2"
            ).fetchall()
        )
        conn.execute(
            f"update raw.sales_orders set total_amount = 10, _loaded_at = {later} where id = ?",
            [first],
        )
        updated = validate(conn, gate, own_copy.reports_dir)
        conn.execute(
            f"update raw.sales_orders set total_amount = -5, _loaded_at = {later} where id = ?",
            [second],
        )
        negative = validate(conn, gate, own_copy.reports_dir)
    assert updated.blocking_passed, updated.failures
    assert updated.loaded_after is not None
    assert (updated.row_count, updated.rows_checked) == (orders, 1)
    assert not negative.blocking_passed
    assert (negative.row_count, negative.rows_checked) == (orders, 1)
    assert {(f["expectation"], f["column"]) for f in negative.failures if f["blocking"]} == {
        ("expect_column_values_to_be_between", "total_amount")
    }


def test_a_changed_model_is_validated_whole(own_copy: Settings) -> None:
    gate = GATES_BY_TABLE["staging.stg_sales__orders"]
    with own_copy.connect_warehouse() as conn:
        validated = baseline(conn, gate.table)
        unchanged = validate(conn, gate, own_copy.reports_dir, definition=validated.definition)
        changed = validate(conn, gate, own_copy.reports_dir, definition="another checksum")
    # The pipeline's run validated the model and recorded its dbt checksum.
    assert validated.definition is not None and validated.validated_through is not None
    assert unchanged.blocking_passed and changed.blocking_passed
    assert (unchanged.rows_checked, unchanged.loaded_after) == (0, validated.validated_through)
    assert changed.loaded_after is None
    assert changed.rows_checked == changed.row_count == unchanged.row_count > 0
