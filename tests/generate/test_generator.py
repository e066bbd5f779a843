"""The demo generator: deterministic, streaming, messy in the ways it promises, with truth."""

from __future__ import annotations

import csv
import hashlib
import json
import sqlite3
from datetime import date
from pathlib import Path

from crm_warehouse.generate import append_day, generate
from crm_warehouse.generate.people import BLOCK_SIZE, Window, draw_people

WINDOW = Window(date(2026, 10, 1), date(2026, 10, 20))


def _tree_digest(root: Path) -> dict[str, str]:
    digests = {}
    for path in sorted(root.rglob("*")):
        if path.is_file() and not path.name.endswith(("-wal", "-shm")):
            content = path.read_bytes()
            if path.suffix == ".db":
                content = _sqlite_dump(path)
            digests[path.relative_to(root).as_posix()] = hashlib.sha256(content).hexdigest()
    return digests


def _sqlite_dump(path: Path) -> bytes:
    with sqlite3.connect(path) as conn:
        return "\n".join(conn.iterdump()).encode()


def test_same_seed_gives_identical_sources(tmp_path: Path) -> None:
    generate(tmp_path / "a", 1_200, 10, seed=3)
    generate(tmp_path / "b", 1_200, 10, seed=3)
    assert _tree_digest(tmp_path / "a") == _tree_digest(tmp_path / "b")


def test_another_seed_gives_other_sources(tmp_path: Path) -> None:
    generate(tmp_path / "a", 1_200, 10, seed=3)
    generate(tmp_path / "b", 1_200, 10, seed=4)
    a, b = _tree_digest(tmp_path / "a"), _tree_digest(tmp_path / "b")
    assert a["_truth/people.csv"] != b["_truth/people.csv"]


def test_a_person_does_not_depend_on_population_size() -> None:
    # Streaming in blocks must not change who people are: growing the population keeps them.
    few = draw_people(seed=5, block=0, count=50, window=WINDOW)
    many = draw_people(seed=5, block=0, count=BLOCK_SIZE, window=WINDOW)
    assert few.name == many.name[:50]
    assert few.mobile == many.mobile[:50]
    assert few.email == many.email[:50]


def test_form_exports_are_gbk_with_chinese_headers(sample_sources: Path) -> None:
    exports = sorted((sample_sources / "forms").glob("export_*.csv"))
    assert exports
    header = exports[0].read_bytes().split(b"\n")[0].decode("gbk")
    assert header.startswith("提交编号,表单名称,姓名,手机,邮箱,城市,提交时间")
    with_chinese = exports[0].read_bytes().split(b"\n")[1]
    assert "会员" in with_chinese.decode("gbk") or any(
        "\u4e00" <= ch <= "\u9fff" for ch in with_chinese.decode("gbk")
    )


def test_sources_spell_the_same_person_in_many_ways(sample_sources: Path) -> None:
    text = "".join(
        path.read_text(encoding="utf-8") for path in (sample_sources / "forms").glob("*.jsonl")
    )
    phones = [
        json.loads(line)["mobile"]
        for line in text.splitlines()
        if line.startswith("{") and line.endswith("}")
    ]
    assert any(p.startswith("+86 ") and "-" in p for p in phones)
    assert any(p.startswith("0086 ") for p in phones)
    assert any("１" in p or "３" in p for p in phones)  # full-width digits
    names = [
        json.loads(line)["name"]
        for line in text.splitlines()
        if line.startswith("{") and line.endswith("}")
    ]
    assert any(name.isascii() and " " in name.strip() for name in names)  # pinyin
    assert any(ch in "陳張劉黃趙偉華龍" for name in names for ch in name)  # traditional


def test_truth_plants_family_phones_and_changed_numbers(sample_sources: Path) -> None:
    with (sample_sources / "_truth" / "people.csv").open(encoding="utf-8") as handle:
        people = list(csv.DictReader(handle))
    assert len(people) == 3_000
    sharing = [p for p in people if p["shares_phone_of"]]
    assert sharing
    by_id = {p["person_id"]: p for p in people}
    for person in sharing:
        owner = by_id[person["shares_phone_of"]]
        assert person["mobile"] != owner["mobile"] or person["name"] != owner["name"]
    assert any(p["second_mobile"] and p["phone_changed_on"] for p in people)
    assert any(p["churned_on"] for p in people)
    assert any(p["complaints_from"] for p in people)


def test_every_kind_of_bad_row_is_planted(sample_sources: Path) -> None:
    with (sample_sources / "_truth" / "bad_rows.csv").open(encoding="utf-8") as handle:
        kinds = {(row["source"], row["kind"]) for row in csv.DictReader(handle)}
    expected = {
        ("forms", "malformed_json"),
        ("forms", "undecodable_bytes"),
        ("forms", "wrong_column_count"),
        ("forms", "unparseable_date"),
        ("forms", "future_date"),
        ("forms", "duplicate_id"),
        ("forms", "oversize_field"),
        ("forms", "control_chars"),
        ("forms", "missing_contact"),
        ("calls", "wrong_column_count"),
        ("calls", "undecodable_bytes"),
        ("calls", "time_order"),
        ("calls", "duplicate_id"),
        ("tickets", "malformed_json"),
        ("tickets", "non_numeric_satisfaction"),
        ("sales_orders", "negative_amount"),
        ("sales_orders", "non_numeric_amount"),
        ("sales_orders", "unknown_customer"),
        ("sales_orders", "future_date"),
        ("sales_order_lines", "negative_quantity"),
        ("campaigns", "negative_cost"),
        ("campaign_touches", "unknown_campaign"),
    }
    assert expected <= kinds


def test_append_day_adds_the_next_day_and_updates_the_sales_system(tmp_path: Path) -> None:
    sources = tmp_path / "sources"
    generate(sources, 2_000, 10, seed=11)
    with sqlite3.connect(sources / "sales" / "sales.db") as conn:
        open_orders = conn.execute(
            "select count(*) from orders where status in ('paid', 'shipped')"
        ).fetchone()[0]
    tickets_before = (sources / "callcentre" / "tickets.jsonl").read_bytes()

    manifest = append_day(sources)

    assert manifest.last_day == "2026-11-01"
    assert manifest.customers > 2_000
    assert (sources / "callcentre" / "calls_2026-11-01.csv").exists()
    tickets_after = (sources / "callcentre" / "tickets.jsonl").read_bytes()
    assert tickets_after.startswith(tickets_before) and len(tickets_after) > len(tickets_before)
    with sqlite3.connect(sources / "sales" / "sales.db") as conn:
        moved = conn.execute(
            "select count(*) from orders where updated_at >= '2026-11-01'"
        ).fetchone()[0]
        new_members = conn.execute(
            "select count(*) from customers where registered_at >= '2026-11-01'"
        ).fetchone()[0]
    assert open_orders > 0 and moved > 0
    assert new_members > 0
