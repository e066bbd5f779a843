"""The serving snapshot on a real pipeline run: masked, versioned, swapped atomically under
a reader that keeps its view, rolled back, pruned, and documented for apps."""

from __future__ import annotations

import grp
import json
import os
import stat

import duckdb
import pytest

from crm_warehouse.publish.serving import SERVING_TABLES, current, publish, rollback
from crm_warehouse.settings import Settings

pytestmark = pytest.mark.slow


def _serving(settings: Settings) -> duckdb.DuckDBPyConnection:
    return duckdb.connect(str(settings.serving_dir / "serving.duckdb"), read_only=True)


def test_the_pipeline_publishes_every_public_table_masked(resolved_home: Settings) -> None:
    warehouse = duckdb.connect(str(resolved_home.warehouse_path), read_only=True)
    serving = resolved_home.serving_dir / "serving.duckdb"
    assert serving.is_symlink()
    warehouse.execute(f"attach '{serving}' as serving (read_only)")
    for table in SERVING_TABLES:
        published, source = warehouse.execute(
            f"select (select count(*) from serving.main.v1_{table.name}), "
            f"(select count(*) from {table.source})"
        ).fetchall()[0]
        assert published == source > 0, table.name
    leaked = warehouse.execute(
        """
        select
            (select count(*) from serving.main.v1_customer_360 as s
             join marts.customer_360 as m using (customer_id)
             where s.phone_e164 = m.phone_e164 or s.email = m.email
                or s.full_name = m.full_name or s.birth_date = m.birth_date
                    and extract(doy from m.birth_date) > 1),
            (select count(*) from serving.main.v1_customer_care_list as s
             join marts.customer_care_list as m using (customer_id, care_reason)
             where s.phone_e164 = m.phone_e164 or s.full_name = m.full_name)
        """
    ).fetchall()[0]
    shapes = warehouse.execute(
        """
        select
            count(*) filter (where phone_e164 is not null),
            count(*) filter (where regexp_full_match(phone_e164, '1[0-9]{2}\\*{4}[0-9]{4}')),
            count(*) filter (where full_name is not null),
            count(*) filter (where regexp_full_match(full_name, '.\\*+'))
        from serving.main.v1_customer_360
        """
    ).fetchall()[0]
    warehouse.close()
    assert leaked == (0, 0)
    assert shapes[0] == shapes[1] > 1_000
    assert shapes[2] == shapes[3] > 1_000
    assert not (resolved_home.serving_dir / "serving_unmasked.duckdb").exists()


def test_a_reader_keeps_its_snapshot_through_a_publish_and_rollback_restores(
    own_copy: Settings,
) -> None:
    reader = _serving(own_copy)
    before = reader.execute("select count(*) from v1_customer_segments").fetchall()[0][0]
    first = current(own_copy.serving_dir)
    with own_copy.connect_warehouse() as warehouse:
        warehouse.execute("delete from marts.customer_segments where customer_id like '%1'")
        published = publish(warehouse, own_copy.serving_dir)
    # The reader opened the old snapshot and still reads it, whole.
    assert reader.execute("select count(*) from v1_customer_segments").fetchall()[0][0] == before
    reader.close()
    assert current(own_copy.serving_dir) == published.snapshot != first
    with _serving(own_copy) as fresh:
        after = fresh.execute("select count(*) from v1_customer_segments").fetchall()[0][0]
    assert 0 < after < before
    assert rollback(own_copy.serving_dir) == first
    with _serving(own_copy) as restored:
        assert (
            restored.execute("select count(*) from v1_customer_segments").fetchall()[0][0] == before
        )
    log = (own_copy.serving_dir / "publish_log.jsonl").read_text(encoding="utf-8")
    assert "rolled_back_to" in log


def test_old_snapshots_are_pruned_to_the_configured_count(own_copy: Settings) -> None:
    with own_copy.connect_warehouse() as warehouse:
        for _ in range(4):
            last = publish(warehouse, own_copy.serving_dir, keep=3)
    snapshots = sorted((own_copy.serving_dir / "snapshots").glob("serving-2*.duckdb"))
    assert len(snapshots) == 3
    assert snapshots[-1] == last.snapshot == current(own_copy.serving_dir)


def test_the_unmasked_twin_is_written_only_for_the_configured_group(own_copy: Settings) -> None:
    group = grp.getgrgid(os.getgid()).gr_name
    with own_copy.connect_warehouse() as warehouse:
        published = publish(warehouse, own_copy.serving_dir, unmasked_group=group)
        real_phones = {
            row[0]
            for row in warehouse.execute(
                "select phone_e164 from marts.customer_360 where phone_e164 is not null"
            ).fetchall()
        }
    assert published.unmasked is not None
    assert stat.S_IMODE(published.unmasked.stat().st_mode) == 0o640
    assert published.unmasked.stat().st_gid == os.getgid()
    twin = own_copy.serving_dir / "serving_unmasked.duckdb"
    with duckdb.connect(str(twin), read_only=True) as unmasked:
        phones = {
            row[0]
            for row in unmasked.execute(
                "select phone_e164 from v1_customer_360 where phone_e164 is not null"
            ).fetchall()
        }
    assert phones == real_phones


def test_the_contract_documents_every_view_with_masking(resolved_home: Settings) -> None:
    contract = json.loads((resolved_home.serving_dir / "contract.json").read_text(encoding="utf-8"))
    views = {view["view"]: view for view in contract["views"]}
    assert set(views) == {f"v1_{table.name}" for table in SERVING_TABLES}
    columns = {c["name"]: c for c in views["v1_customer_360"]["columns"]}
    assert columns["phone_e164"]["masking"] == "phone"
    assert columns["customer_id"]["masking"] == "none"
    described = [c for view in views.values() for c in view["columns"] if c["description"]]
    assert len(described) > 100
    markdown = (resolved_home.serving_dir / "contract.md").read_text(encoding="utf-8")
    assert "## `v1_customer_scores`" in markdown and "138****5678" in markdown
