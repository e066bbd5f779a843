"""Erasure on a real pipeline home: no trace of the person in any table or file under CRM_HOME,
serving snapshots included; the ledger still balances; old files and a full re-pull of the
sales system do not bring them back."""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

import duckdb
import pytest

from crm_warehouse.erasure.blocklist import Blocklist
from crm_warehouse.erasure.erase import AlreadyErased, audit_path, erase_customer
from crm_warehouse.erasure.keys import normalize
from crm_warehouse.ingest.contracts import ALL_CONTRACTS
from crm_warehouse.ingest.runner import ingest_all
from crm_warehouse.publish.serving import current, publish, rollback
from crm_warehouse.settings import Settings
from quality.reconciliation import reconcile_latest_batch

pytestmark = pytest.mark.slow


def _traces(home: Path, needles: list[str]) -> list[str]:
    """Every place under `home` a needle occurs: file bytes (UTF-8 or GBK) and, because
    database pages are compressed, every row of every DuckDB and SQLite table as text."""
    found = []
    for path in sorted(p for p in home.rglob("*") if p.is_file()):
        data = path.read_bytes()
        for needle in needles:
            for encoding in ("utf-8", "gb18030"):
                if needle.encode(encoding) in data:
                    found.append(f"{path} bytes {needle} ({encoding})")
        if data[:16] == b"SQLite format 3\0":
            with sqlite3.connect(path) as conn:
                tables = [
                    row[0]
                    for row in conn.execute("select name from sqlite_master where type = 'table'")
                ]
                for table in tables:
                    columns = [row[1] for row in conn.execute(f'pragma table_info("{table}")')]
                    for needle in needles:
                        hits = conn.execute(
                            f'select count(*) from "{table}" where '
                            + " or ".join(f'instr(cast("{c}" as text), ?) > 0' for c in columns),
                            [needle] * len(columns),
                        ).fetchone()[0]
                        if hits:
                            found.append(f"{path} table {table}: {needle}")
        elif data[8:12] == b"DUCK":
            found += _duckdb_hits(path, needles)
    return found


def _duckdb_hits(path: Path, needles: list[str], schemas: tuple[str, ...] = ()) -> list[str]:
    """Rows of a DuckDB file (of `schemas`, or all) whose text holds a needle."""
    found = []
    with duckdb.connect(str(path), read_only=True) as conn:
        tables = conn.execute("select schema_name, table_name from duckdb_tables()").fetchall()
        for schema, table in tables:
            if schemas and schema not in schemas:
                continue
            for needle in needles:
                hits = conn.execute(
                    f'select count(*) from "{schema}"."{table}" as t '
                    "where contains(cast(t as varchar), ?)",
                    [needle],
                ).fetchall()[0][0]
                if hits:
                    found.append(f"{path} table {schema}.{table}: {needle}")
    return found


@pytest.fixture
def full_copy(resolved_home: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """The resolved home with everything, Dagster's run storage included."""
    home = tmp_path / "crm"
    shutil.copytree(resolved_home.crm_home, home, symlinks=True)
    for name in ("CRM_FORMS_DIR", "CRM_CALLCENTRE_DIR", "CRM_CAMPAIGNS_DIR", "CRM_SALES_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("CRM_HOME", str(home))
    return Settings.from_env()


def _a_person(settings: Settings) -> tuple[str, list[str]]:
    """A customer with a phone, an email, orders, calls and a name nobody else has."""
    with duckdb.connect(str(settings.warehouse_path), read_only=True) as conn:
        row = conn.execute("""
            select c.customer_id, c.full_name, c.phone_e164, c.email
            from marts.customer_360 as c
            where c.phone_e164 is not null and c.email is not null and c.order_count >= 2
              and exists (
                  select 1 from intermediate.int_callcentre__call_customers as calls
                  where calls.customer_id = c.customer_id)
              and (select count(distinct customer_id) from identity.records as r
                   where r.name_norm = c.full_name) = 1
            order by c.customer_id
            limit 1
        """).fetchall()[0]
    customer_id, name, phone, email = row
    return customer_id, [name, normalize("phone", phone) or "", email]


def test_erase_leaves_no_trace_and_keeps_the_person_out(
    full_copy: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = full_copy
    with settings.connect_warehouse() as warehouse:
        publish(warehouse, settings.serving_dir)  # a second snapshot, to roll back to
    originals = tmp_path / "originals"
    shutil.copytree(settings.sources_dir, originals)
    customer_id, needles = _a_person(settings)
    assert len(_traces(settings.crm_home, needles)) > 10  # the scan finds them before

    report = erase_customer(settings, customer_id, reference="REQ-2026-001")

    assert _traces(settings.crm_home, [*needles, customer_id]) == []
    assert report.rows_removed and report.files_rewritten and report.blocklist_entries > 3
    assert report.source_rows_removed["customers"] >= 1
    audit = [json.loads(line) for line in audit_path(settings).read_text().splitlines()]
    assert [record["erasure_id"] for record in audit] == [report.erasure_id]
    assert audit[0]["reference"] == "REQ-2026-001" and len(audit[0]["subject"]) == 64
    with pytest.raises(AlreadyErased):
        erase_customer(settings, customer_id)

    # Every batch still accounts for every row it read, and the marts still build.
    with duckdb.connect(str(settings.warehouse_path), read_only=True) as conn:
        for contract in ALL_CONTRACTS:
            assert reconcile_latest_batch(conn, contract).passed, contract.source
        erased = conn.execute("select sum(rows_erased) from meta.batches").fetchall()[0][0]
        assert (
            erased
            == sum(
                count for table, count in report.rows_removed.items() if table.startswith("raw.")
            )
            + report.quarantined_rows_removed
        )
    # The snapshot rolled back to was scrubbed too.
    live = current(settings.serving_dir)
    assert rollback(settings.serving_dir) != live
    assert _traces(settings.serving_dir, [*needles, customer_id]) == []

    # Old files come again: the same bytes under new names, and a re-export with other line
    # endings; the sales system (its unerased copy) is pulled again from the start.
    resent = settings.sources_dir / "callcentre"
    for call_file in sorted((originals / "callcentre").glob("calls_*.csv")):
        data = call_file.read_bytes()
        if needles[1].encode() in data:
            (resent / f"{call_file.stem}_resent.csv").write_bytes(data)
            (resent / f"{call_file.stem}_crlf.csv").write_bytes(data.replace(b"\n", b"\r\n"))
    sales_copy = tmp_path / "sales_system.db"
    shutil.copy(originals / "sales" / "sales.db", sales_copy)
    monkeypatch.setenv("CRM_SALES_URL", f"sqlite:///{sales_copy}")
    again = Settings.from_env()
    assert Blocklist.load(again)
    with again.connect_warehouse() as conn:
        conn.execute("delete from meta.watermarks")
        counts = ingest_all(conn, again)
        for contract in ALL_CONTRACTS:
            assert reconcile_latest_batch(conn, contract).passed, contract.source
    assert counts["calls"].rows_erased >= 1 and counts["calls"].rows_loaded == 0
    assert counts["tickets"].rows_in == 0  # the rewritten log is known to the file ledger
    assert counts["sales_customers"].rows_erased >= 1
    assert counts["sales_orders"].rows_erased >= 2
    # Only raw and quarantine: the re-sent files themselves still carry the person.
    assert _duckdb_hits(again.warehouse_path, needles, ("raw", "quarantine")) == []
