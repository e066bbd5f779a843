"""A real `dbt build` of staging on a real DuckDB file loaded from generated sources, checked
against the generator's truth."""

from __future__ import annotations

import csv
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from crm_warehouse.ingest.runner import ingest_all
from crm_warehouse.settings import Settings
from orchestration.assets.dbt import dbt_cli_selection

pytestmark = pytest.mark.slow
DBT_PROJECT = Path(__file__).resolve().parents[2] / "dbt_project"


@pytest.fixture(scope="module")
def built_home(tmp_path_factory: pytest.TempPathFactory, sample_sources: Path) -> Settings:
    home = tmp_path_factory.mktemp("dbt") / "crm"
    shutil.copytree(sample_sources, home / "sources")
    settings = Settings.from_env({"CRM_HOME": str(home)})
    settings.ensure_dirs()
    with duckdb.connect(str(settings.warehouse_path)) as conn:
        ingest_all(conn, settings)
    dbt = shutil.which("dbt") or str(Path(sys.executable).with_name("dbt"))
    result = subprocess.run(
        [
            dbt,
            "build",
            "--project-dir",
            str(DBT_PROJECT),
            "--profiles-dir",
            str(DBT_PROJECT),
            "--target-path",
            str(home / "dbt" / "target"),
            # The part of the project before identity resolution; the parts after identity
            # and scoring are tested through the pipeline (tests/identity, marts, ml).
            *dbt_cli_selection("dbt_staging"),
        ],
        env={**os.environ, "CRM_HOME": str(home)},
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-4000:]
    assert "ERROR=0" in result.stdout and "PASS=" in result.stdout
    return settings


@pytest.fixture(scope="module")
def warehouse(built_home: Settings):
    with duckdb.connect(str(built_home.warehouse_path), read_only=True) as conn:
        yield conn


def _people(settings: Settings) -> dict[str, dict[str, str]]:
    with (settings.truth_dir / "people.csv").open(encoding="utf-8") as handle:
        return {row["person_id"]: row for row in csv.DictReader(handle)}


def _record_people(settings: Settings, source: str) -> dict[str, str]:
    with (settings.truth_dir / "records.csv").open(encoding="utf-8") as handle:
        return {
            row["record_key"]: row["person_id"]
            for row in csv.DictReader(handle)
            if row["source"] == source
        }


def test_staging_keeps_every_raw_row(warehouse: duckdb.DuckDBPyConnection) -> None:
    pairs = {
        "form_submissions": "stg_forms__submissions",
        "calls": "stg_callcentre__calls",
        "sales_customers": "stg_sales__customers",
        "sales_orders": "stg_sales__orders",
        "sales_order_lines": "stg_sales__order_lines",
        "campaign_touches": "stg_campaigns__touches",
    }
    for raw, staged in pairs.items():
        ((raw_rows,),) = warehouse.execute(f"select count(*) from raw.{raw}").fetchall()
        ((staged_rows,),) = warehouse.execute(f"select count(*) from staging.{staged}").fetchall()
        assert raw_rows == staged_rows > 0, raw


def _true_numbers(person: dict[str, str], people: dict[str, dict[str, str]]) -> set[str]:
    numbers = {person["mobile"], person["second_mobile"]}
    if person["shares_phone_of"]:
        numbers.add(people[person["shares_phone_of"]]["mobile"])
    return {f"+86{n}" for n in numbers if n}


def test_every_phone_spelling_becomes_the_true_number(
    built_home: Settings, warehouse: duckdb.DuckDBPyConnection
) -> None:
    people = _people(built_home)
    owners = _record_people(built_home, "forms")
    rows = warehouse.execute(
        "select submission_id, phone_raw, phone_e164 from staging.stg_forms__submissions "
        "where nullif(trim(phone_raw), '') is not null"
    ).fetchall()
    spellings = {raw for _, raw, _ in rows}
    assert any(raw.startswith("0086") for raw in spellings)
    assert any(re.search("[０-９]", raw) for raw in spellings)
    wrong = [
        (sid, raw, e164)
        for sid, raw, e164 in rows
        if e164 not in _true_numbers(people[owners[sid]], people)
    ]
    assert wrong == []


def test_emails_are_trimmed_and_lower_cased(
    built_home: Settings, warehouse: duckdb.DuckDBPyConnection
) -> None:
    people = _people(built_home)
    owners = _record_people(built_home, "forms")
    rows = warehouse.execute(
        "select submission_id, email from staging.stg_forms__submissions where email is not null"
    ).fetchall()
    assert rows
    assert all(email == people[owners[sid]]["email"].lower() for sid, email in rows)


def test_names_are_nfkc_normalised_and_trimmed(warehouse: duckdb.DuckDBPyConnection) -> None:
    names = [
        name
        for (name,) in warehouse.execute(
            "select full_name from staging.stg_forms__submissions where full_name is not null"
        ).fetchall()
    ]
    assert names
    assert all(name == name.strip() and "\u3000" not in name and "  " not in name for name in names)
    ((raw_spaced,),) = warehouse.execute(
        "select count(*) from raw.form_submissions where name like '%\u3000%'"
    ).fetchall()
    assert raw_spaced > 0  # the ideographic spaces were there before staging


def test_cities_match_the_division_code_seed(warehouse: duckdb.DuckDBPyConnection) -> None:
    ((given, matched),) = warehouse.execute(
        "select count(city_raw), count(city_code) from staging.stg_sales__customers"
    ).fetchall()
    assert given > 0 and matched == given
    codes = dict(
        warehouse.execute(
            "select city_raw, city_code from staging.stg_forms__submissions "
            "where city_raw in ('上海', '上海市', 'Shanghai', '广东省广州市', 'Hong Kong')"
        ).fetchall()
    )
    expected = {
        "上海": "310000",
        "上海市": "310000",
        "Shanghai": "310000",
        "广东省广州市": "440100",
        "Hong Kong": "810000",
    }
    assert {k: v for k, v in expected.items() if k in codes} == {
        k: codes[k] for k in expected if k in codes
    }
    assert len(codes) >= 3


def test_local_times_become_utc(warehouse: duckdb.DuckDBPyConnection) -> None:
    ((mismatches,),) = warehouse.execute("""
        select count(*)
        from raw.calls
        join staging.stg_callcentre__calls using (call_id)
        where stg_callcentre__calls.queued_at <> raw.calls.queued_at - interval 8 hour
    """).fetchall()
    assert mismatches == 0
