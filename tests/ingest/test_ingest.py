"""Ingest on a real DuckDB file: nothing lost, bad rows quarantined with their reason,
idempotent, incremental, all or nothing."""

from __future__ import annotations

import csv
import os
import sqlite3
from pathlib import Path

import duckdb
import pytest

from crm_warehouse.erasure.blocklist import Blocklist
from crm_warehouse.generate import append_day
from crm_warehouse.ingest import files as files_module
from crm_warehouse.ingest import sales as sales_module
from crm_warehouse.ingest.contracts import FORM_SUBMISSIONS
from crm_warehouse.ingest.files import FileSet, SourceContractError, load_file_sources
from crm_warehouse.ingest.runner import ingest_all
from crm_warehouse.settings import Settings

# What each planted defect must be quarantined as.
EXPECTED_REASON = {
    "malformed_json": "malformed_json",
    "undecodable_bytes": "undecodable_bytes",
    "wrong_column_count": "wrong_column_count",
    "unparseable_date": "unparseable_value",
    "future_date": "future_date",
    "duplicate_id": "duplicate_id",
    "oversize_field": "oversize_field",
    "control_chars": "control_characters",
    "missing_contact": "missing_contact",
    "time_order": "time_order",
    "satisfaction_out_of_range": "out_of_range",
    "non_numeric_satisfaction": "unparseable_value",
    "negative_amount": "out_of_range",
    "non_numeric_amount": "unparseable_value",
    "unknown_customer": "unknown_reference",
    "negative_quantity": "out_of_range",
    "negative_cost": "out_of_range",
    "unknown_campaign": "unknown_reference",
}
RAW_TABLES = (
    "form_submissions",
    "calls",
    "tickets",
    "campaigns",
    "campaign_touches",
    "sales_customers",
    "sales_products",
    "sales_orders",
    "sales_order_lines",
)


def _snapshot(conn: duckdb.DuckDBPyConnection) -> dict[str, list[tuple]]:
    tables = [f"raw.{t}" for t in RAW_TABLES] + [
        "quarantine.rejected_rows",
        "meta.batches",
        "meta.loaded_files",
        "meta.watermarks",
    ]
    return {
        table: sorted(conn.execute(f"select * from {table}").fetchall(), key=repr)
        for table in tables
    }


def _truth_bad_rows(settings: Settings) -> list[dict[str, str]]:
    with (settings.truth_dir / "bad_rows.csv").open(encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def test_re_encoded_copies_of_source_files_do_not_outlive_the_load(
    sourced_home: Settings, warehouse: duckdb.DuckDBPyConnection
) -> None:
    ingest_all(warehouse, sourced_home)  # GBK exports are read through UTF-8 copies
    assert list(sourced_home.scratch_dir.iterdir()) == []


def test_every_planted_bad_row_is_quarantined_with_its_reason(
    sourced_home: Settings, warehouse: duckdb.DuckDBPyConnection
) -> None:
    ingest_all(warehouse, sourced_home)
    quarantined = warehouse.execute(
        "select source, source_file, position, record_key, reason_code, reason "
        "from quarantine.rejected_rows"
    ).fetchall()
    by_line = {(s, Path(f).name, p): code for s, f, p, _, code, _ in quarantined}
    by_key = {(s, k): code for s, _, _, k, code, _ in quarantined if k}
    planted = _truth_bad_rows(sourced_home)
    assert len(planted) > 100
    for row in planted:
        if row["file"].startswith("sales."):
            found = by_key.get((row["source"], row["record_key"]))
            if row["source"] == "sales_customers":
                found = by_key.get((row["source"], str(int(row["line"]))))
            if row["source"] in ("sales_orders", "sales_order_lines"):
                found = by_key.get((row["source"], row["line"]))
        else:
            found = by_line.get((row["source"], Path(row["file"]).name, int(row["line"])))
        assert found == EXPECTED_REASON[row["kind"]], row
    assert all(reason for *_, reason in quarantined)


def test_quarantine_reasons_name_the_field_and_value(
    sourced_home: Settings, warehouse: duckdb.DuckDBPyConnection
) -> None:
    ingest_all(warehouse, sourced_home)
    reasons = {
        code: reason
        for code, reason in warehouse.execute(
            "select reason_code, min(reason) from quarantine.rejected_rows group by 1"
        ).fetchall()
    }
    assert "submitted_at" in reasons["unparseable_value"] or "'" in reasons["unparseable_value"]
    assert "is in the future" in reasons["future_date"]
    assert "characters, over the limit of 2000" in reasons["oversize_field"]
    assert "first seen in" in reasons["duplicate_id"]
    assert "is not a known" in reasons["unknown_reference"]
    payloads = warehouse.execute(
        "select count(*) from quarantine.rejected_rows where raw_payload is null"
    ).fetchall()
    assert payloads == [(0,)]


def _data_lines(path: Path) -> int:
    lines = [line for line in path.read_bytes().split(b"\n") if line.strip()]
    return len(lines) - (1 if path.suffix == ".csv" else 0)


def test_rows_in_equal_rows_loaded_plus_quarantined(
    sourced_home: Settings, warehouse: duckdb.DuckDBPyConnection
) -> None:
    counts = ingest_all(warehouse, sourced_home)
    for source, count in counts.items():
        assert count.rows_in == count.rows_loaded + count.rows_quarantined, source
    # Independently of the ledger: every line of every file is in raw or in quarantine.
    sources = sourced_home.sources_dir
    expected = {
        "forms": sum(_data_lines(p) for p in (sources / "forms").iterdir()),
        "calls": sum(_data_lines(p) for p in (sources / "callcentre").glob("calls_*.csv")),
        "tickets": _data_lines(sources / "callcentre" / "tickets.jsonl"),
        "campaign_touches": sum(
            _data_lines(p) for p in (sources / "campaigns").glob("touches_*.csv")
        ),
    }
    tables = {
        "forms": "form_submissions",
        "calls": "calls",
        "tickets": "tickets",
        "campaign_touches": "campaign_touches",
    }
    for source, lines in expected.items():
        ((loaded,),) = warehouse.execute(f"select count(*) from raw.{tables[source]}").fetchall()
        ((held,),) = warehouse.execute(
            "select count(*) from quarantine.rejected_rows where source = ?", [source]
        ).fetchall()
        assert loaded + held == lines, source
    with sqlite3.connect(sources / "sales" / "sales.db") as sales:
        for table in ("customers", "orders", "order_lines"):
            ((in_source,),) = sales.execute(f"select count(*) from {table}").fetchall()
            ((loaded,),) = warehouse.execute(f"select count(*) from raw.sales_{table}").fetchall()
            ((held,),) = warehouse.execute(
                "select count(*) from quarantine.rejected_rows where source = ?", [f"sales_{table}"]
            ).fetchall()
            assert loaded + held == in_source, table


def test_running_twice_changes_nothing(
    sourced_home: Settings, warehouse: duckdb.DuckDBPyConnection
) -> None:
    ingest_all(warehouse, sourced_home)
    before = _snapshot(warehouse)
    again = ingest_all(warehouse, sourced_home)
    assert all(count.rows_in == 0 for count in again.values())
    assert _snapshot(warehouse) == before


def test_an_appended_day_is_loaded_incrementally(
    sourced_home: Settings, warehouse: duckdb.DuckDBPyConnection
) -> None:
    ingest_all(warehouse, sourced_home)
    ((calls_before,),) = warehouse.execute("select count(*) from raw.calls").fetchall()
    append_day(sourced_home.sources_dir)
    counts = ingest_all(warehouse, sourced_home)

    new_calls = sourced_home.sources_dir / "callcentre" / "calls_2026-11-01.csv"
    assert counts["calls"].files == [new_calls.as_posix()]
    assert counts["calls"].rows_in == _data_lines(new_calls)
    ((calls_after,),) = warehouse.execute("select count(*) from raw.calls").fetchall()
    assert calls_after == calls_before + counts["calls"].rows_loaded
    # The ticket log grew: only its tail is read, positions continue from the old end.
    tail = warehouse.execute(
        "select start_byte, rows_in from meta.loaded_files where path like '%tickets.jsonl' "
        "order by loaded_at"
    ).fetchall()
    assert len(tail) == 2 and tail[1][0] > 0 and tail[1][1] == counts["tickets"].rows_in
    # Sales updates: status changes arrive as new versions and replace the old rows.
    with sqlite3.connect(sourced_home.sources_dir / "sales" / "sales.db") as sales:
        moved = dict(
            sales.execute(
                "select id, status from orders where updated_at >= '2026-11-01'"
            ).fetchall()
        )
    assert counts["sales_orders"].rows_loaded > 0
    loaded = dict(
        warehouse.execute(
            "select id, status from raw.sales_orders where id in (select unnest(?))", [list(moved)]
        ).fetchall()
    )
    assert {k: v for k, v in moved.items() if k in loaded} == loaded
    ((duplicates,),) = warehouse.execute(
        "select count(*) - count(distinct id) from raw.sales_orders"
    ).fetchall()
    assert duplicates == 0


def test_a_gbk_export_round_trips_exactly(
    crm_home: Settings, warehouse: duckdb.DuckDBPyConnection
) -> None:
    forms = crm_home.forms_dir
    forms.mkdir(parents=True)
    name, message = "欧阳娜娜", "「会员日」活动很好！请联系我：１３８号，谢谢"
    export = (
        "提交编号,表单名称,姓名,手机,邮箱,城市,提交时间,来源渠道,同意营销,留言\n"
        f"X1,产品咨询,{name},13812345678,,广州市,2026/10/5 9:40,微信,是,{message}\n"
    )
    (forms / "export_20261005.csv").write_bytes(export.encode("gbk"))
    fileset = FileSet(FORM_SUBMISSIONS, forms, "*.csv", "csv", encoding="gb18030")

    counts = load_file_sources(
        warehouse, [fileset], "Asia/Shanghai", crm_home.scratch_dir, blocklist=Blocklist.empty()
    )

    assert (counts.rows_in, counts.rows_loaded) == (1, 1)
    row = warehouse.execute(
        "select name, message, city, submitted_at, consent_marketing, _source_position "
        "from raw.form_submissions"
    ).fetchall()[0]
    assert row[0] == name and row[1] == message and row[2] == "广州市"
    assert str(row[3]) == "2026-10-05 09:40:00" and row[4] is True and row[5] == 2


def test_undecodable_line_is_quarantined_with_its_bytes(
    crm_home: Settings, warehouse: duckdb.DuckDBPyConnection
) -> None:
    forms = crm_home.forms_dir
    forms.mkdir(parents=True)
    header = "提交编号,姓名,手机,提交时间\n".encode("gbk")
    good = "A1,王芳,13812345678,2026-10-05 10:00\n".encode("gbk")
    bad = b"A2,\xff\xfe,13812345679,2026-10-05 10:00\n"
    (forms / "export_1.csv").write_bytes(header + good + bad + good.replace(b"A1", b"A3"))
    fileset = FileSet(FORM_SUBMISSIONS, forms, "*.csv", "csv", encoding="gb18030")

    counts = load_file_sources(
        warehouse, [fileset], "Asia/Shanghai", crm_home.scratch_dir, blocklist=Blocklist.empty()
    )

    assert (counts.rows_in, counts.rows_loaded, counts.rows_quarantined) == (3, 2, 1)
    held = warehouse.execute(
        "select position, reason_code, raw_payload from quarantine.rejected_rows"
    ).fetchall()
    assert held == [(3, "undecodable_bytes", "A2,\\xff\\xfe,13812345679,2026-10-05 10:00")]
    positions = warehouse.execute(
        "select submission_id, _source_position from raw.form_submissions order by 1"
    ).fetchall()
    assert positions == [("A1", 2), ("A3", 4)]


def test_a_missing_required_column_names_the_file_and_column(
    crm_home: Settings, warehouse: duckdb.DuckDBPyConnection
) -> None:
    forms = crm_home.forms_dir
    forms.mkdir(parents=True)
    (forms / "export_x.csv").write_text("姓名,手机\n王芳,13812345678\n", encoding="utf-8")
    fileset = FileSet(FORM_SUBMISSIONS, forms, "*.csv", "csv")
    with pytest.raises(SourceContractError, match=r"export_x\.csv: line 1: .*submission_id"):
        load_file_sources(
            warehouse, [fileset], "Asia/Shanghai", crm_home.scratch_dir, blocklist=Blocklist.empty()
        )


def test_an_exception_mid_batch_leaves_raw_unchanged(
    sourced_home: Settings,
    warehouse: duckdb.DuckDBPyConnection,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ingest_all(warehouse, sourced_home)
    append_day(sourced_home.sources_dir)
    before = _snapshot(warehouse)

    real_read_csv = files_module._read_csv_files
    reads = []

    def read_then_fail(*args, **kwargs):
        reads.append(1)
        if len(reads) == 1:
            raise OSError("disk went away")
        return real_read_csv(*args, **kwargs)

    monkeypatch.setattr(files_module, "_read_csv_files", read_then_fail)
    real_write = sales_module.write_parsed
    tables_written = []

    def write_then_fail_on_orders(conn, batch, contract, *args):
        real_write(conn, batch, contract, *args)  # the orders are in raw now …
        tables_written.append(contract.source)
        if contract.source == "sales_orders":
            raise ConnectionError("sales system went away")  # … until the rollback

    monkeypatch.setattr(sales_module, "write_parsed", write_then_fail_on_orders)

    with pytest.raises(OSError, match="disk went away"):
        ingest_all(warehouse, sourced_home)  # forms: the JSON lines are in, then a CSV fails
    assert _snapshot(warehouse) == before
    with pytest.raises(ConnectionError):
        sales_module.pull_sales(
            warehouse,
            sourced_home.sales_url,
            sourced_home.sales_tables,
            sourced_home.source_timezone,
            blocklist=Blocklist.empty(),
        )
    assert tables_written[-1] == "sales_orders"
    after = _snapshot(warehouse)
    # Each sales table is its own batch: the customers batch completed, the orders batch
    # left nothing behind.
    assert after["raw.sales_customers"] != before["raw.sales_customers"]
    for table in ("raw.sales_orders", "raw.sales_order_lines"):
        assert after[table] == before[table]
    assert [w for w in after["meta.watermarks"] if w[0] == "sales_orders"] == [
        w for w in before["meta.watermarks"] if w[0] == "sales_orders"
    ]
    assert not [
        b
        for b in after["meta.batches"]
        if b[1] == "sales_orders" and b not in before["meta.batches"]
    ]


def test_json_lines_keep_their_line_numbers_across_blank_and_broken_lines(
    crm_home: Settings, warehouse: duckdb.DuckDBPyConnection
) -> None:
    forms = crm_home.forms_dir
    forms.mkdir(parents=True)
    good = '{"id": "%s", "name": "王芳", "submitted_at": "2026-10-05T10:00:00+08:00"}'
    lines = [
        good % "J1",
        "",
        good % "J2",
        '{"id": "J3", "name": "x\x01"',
        "[1, 2]",
        "\r",
        good % "J4",
    ]
    (forms / "submissions.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    fileset = FileSet(FORM_SUBMISSIONS, forms, "*.jsonl", "jsonl")

    counts = load_file_sources(
        warehouse, [fileset], "Asia/Shanghai", crm_home.scratch_dir, blocklist=Blocklist.empty()
    )

    assert (counts.rows_in, counts.rows_loaded, counts.rows_quarantined) == (5, 3, 2)
    loaded = warehouse.execute(
        "select submission_id, _source_position, submitted_at from raw.form_submissions order by 2"
    ).fetchall()
    assert [(sid, pos) for sid, pos, _ in loaded] == [("J1", 1), ("J2", 3), ("J4", 7)]
    assert str(loaded[0][2]) == "2026-10-05 10:00:00"  # the offset's local time
    held = warehouse.execute(
        "select position, reason_code from quarantine.rejected_rows order by 1"
    ).fetchall()
    assert held == [(4, "malformed_json"), (5, "malformed_json")]


def test_every_loaded_row_points_at_its_source_line(
    sourced_home: Settings, warehouse: duckdb.DuckDBPyConnection
) -> None:
    ingest_all(warehouse, sourced_home)
    lines: dict[str, list[bytes]] = {}
    checked = 0
    for table, key in (
        ("calls", "call_id"),
        ("form_submissions", "submission_id"),
        ("tickets", "ticket_id"),
        ("campaign_touches", "touch_id"),
    ):
        for value, file, position in warehouse.execute(
            f"select {key}, _source_file, _source_position from raw.{table}"
        ).fetchall():
            if file not in lines:
                lines[file] = Path(file).read_bytes().split(b"\n")
            assert value.encode() in lines[file][position - 1], (table, value, file, position)
            checked += 1
    assert checked > 1_000


def test_a_repeated_ticket_version_is_a_duplicate_but_a_new_version_is_not(
    crm_home: Settings, warehouse: duckdb.DuckDBPyConnection
) -> None:
    from crm_warehouse.ingest.contracts import TICKETS

    folder = crm_home.callcentre_dir
    folder.mkdir(parents=True)

    def version(status: str, updated_at: str) -> str:
        return (
            f'{{"ticket_id": "T1", "status": "{status}", '
            f'"opened_at": "2026-10-01 09:00:00", "updated_at": "{updated_at}"}}'
        )

    first = version("open", "2026-10-01 09:30:00")
    later = version("resolved", "2026-10-02 10:00:00")
    (folder / "tickets.jsonl").write_text("\n".join([first, first, later]) + "\n", encoding="utf-8")
    fileset = FileSet(TICKETS, folder, "tickets*.jsonl", "jsonl")

    counts = load_file_sources(
        warehouse, [fileset], "Asia/Shanghai", crm_home.scratch_dir, blocklist=Blocklist.empty()
    )

    assert (counts.rows_loaded, counts.rows_quarantined) == (2, 1)
    held = warehouse.execute(
        "select position, reason_code, reason from quarantine.rejected_rows"
    ).fetchall()
    assert held[0][:2] == (2, "duplicate_id") and "first seen in" in held[0][2]


def test_a_file_is_read_again_only_once_its_size_or_modification_time_changed(
    crm_home: Settings, warehouse: duckdb.DuckDBPyConnection
) -> None:
    from crm_warehouse.ingest.contracts import TICKETS

    folder = crm_home.callcentre_dir
    folder.mkdir(parents=True)
    log = folder / "tickets.jsonl"

    def ticket(ticket_id: str) -> str:
        return (
            f'{{"ticket_id": "{ticket_id}", "status": "open", '
            '"opened_at": "2026-10-01 09:00:00", "updated_at": "2026-10-01 09:30:00"}\n'
        )

    def load() -> list[str]:
        counts = load_file_sources(
            warehouse,
            [FileSet(TICKETS, folder, "tickets*.jsonl", "jsonl")],
            "Asia/Shanghai",
            crm_home.scratch_dir,
            blocklist=Blocklist.empty(),
        )
        return counts.files

    def loaded_ids() -> list[str]:
        rows = warehouse.execute("select ticket_id from raw.tickets order by ticket_id")
        return [row[0] for row in rows.fetchall()]

    log.write_text(ticket("T1"), encoding="utf-8")
    assert load() == [log.as_posix()]
    # Rewritten to the same size with its modification time put back: the quick check of
    # rsync and git takes it as unchanged, so it is not even read.
    kept = log.stat()
    log.write_text(ticket("T2"), encoding="utf-8")
    os.utime(log, ns=(kept.st_atime_ns, kept.st_mtime_ns))
    assert load() == []
    assert loaded_ids() == ["T1"]
    # Touched: read again, and its new content loads.
    os.utime(log, ns=(kept.st_atime_ns, kept.st_mtime_ns + 1_000_000_000))
    assert load() == [log.as_posix()]
    assert loaded_ids() == ["T1", "T2"]
    # Grown: only the tail is loaded, from where the last load ended.
    with log.open("a", encoding="utf-8") as appending:
        appending.write(ticket("T3"))
    assert load() == [log.as_posix()]
    assert loaded_ids() == ["T1", "T2", "T3"]
    assert warehouse.execute(
        "select start_byte, end_byte, file_size from meta.loaded_files order by loaded_at"
    ).fetchall()[-1] == (len(ticket("T2")), log.stat().st_size, log.stat().st_size)
    # Only touched: read once, found loaded, and its new time recorded, so that a same-size
    # rewrite with that time put back is then skipped unread as well.
    grown = log.stat()
    os.utime(log, ns=(grown.st_atime_ns, grown.st_mtime_ns + 2_000_000_000))
    assert load() == []
    touched = log.stat()
    log.write_text(ticket("T2") + ticket("T4"), encoding="utf-8")
    os.utime(log, ns=(touched.st_atime_ns, touched.st_mtime_ns))
    assert load() == []
    assert loaded_ids() == ["T1", "T2", "T3"]


def test_a_campaign_planned_ahead_loads_and_a_date_years_ahead_is_quarantined(
    crm_home: Settings, warehouse: duckdb.DuckDBPyConnection
) -> None:
    from datetime import date, timedelta

    from crm_warehouse.ingest.contracts import CAMPAIGNS, PLANNED_DAYS_AHEAD

    folder = crm_home.campaigns_dir
    folder.mkdir(parents=True)
    today = date.today()
    rows = [
        # Running now, ends in two weeks; announced for next month; a typo years ahead.
        ("CMP0001", today - timedelta(days=3), today + timedelta(days=14)),
        ("CMP0002", today + timedelta(days=30), today + timedelta(days=44)),
        ("CMP0003", today, today + timedelta(days=PLANNED_DAYS_AHEAD + 30)),
    ]
    with (folder / "campaigns.csv").open("w", encoding="utf-8", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(["campaign_id", "campaign_name", "start_date", "end_date", "cost"])
        for campaign_id, start, end in rows:
            writer.writerow([campaign_id, "双十一预热", start.isoformat(), end.isoformat(), "100"])
    fileset = FileSet(CAMPAIGNS, folder, "campaigns*.csv", "csv")

    counts = load_file_sources(
        warehouse, [fileset], "Asia/Shanghai", crm_home.scratch_dir, blocklist=Blocklist.empty()
    )

    assert (counts.rows_loaded, counts.rows_quarantined) == (2, 1)
    loaded = warehouse.execute("select campaign_id from raw.campaigns order by 1").fetchall()
    assert loaded == [("CMP0001",), ("CMP0002",)]
    held = warehouse.execute(
        "select record_key, reason_code, reason from quarantine.rejected_rows"
    ).fetchall()
    assert held[0][:2] == ("CMP0003", "future_date")
    assert f"over {PLANNED_DAYS_AHEAD} days ahead" in held[0][2]
