"""A run parses the dbt project again exactly when its manifest is stale, and each dbt step
starts from the home's parse state."""

from __future__ import annotations

import json
import os
from importlib import metadata
from pathlib import Path

import dagster_dbt.core.resource
import duckdb
import pytest
from packaging import version

from crm_warehouse.settings import Settings
from orchestration.assets.dbt import (
    DBT_BUILD_STEPS,
    KEPT_INVOCATIONS,
    PARTIAL_PARSE_FILE,
    invocation_target_path,
)
from orchestration.dbt_project import (
    DBT_PROJECT_DIR,
    InstalledDbtCliResource,
    dbt_executable,
    manifest_is_current,
    prepared_dbt_project,
    record_parsed_project,
)


def _write_manifest(path: Path, adapter: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"metadata": {"adapter_type": adapter, "env": {}}}), "utf-8")


def test_a_manifest_is_stale_after_a_change_to_the_project_its_checkout_or_the_target(
    tmp_path: Path,
) -> None:
    project = tmp_path / "dbt_project"
    model = project / "models" / "marts" / "fct_orders.sql"
    model.parent.mkdir(parents=True)
    model.write_text("select 1 as order_id", "utf-8")
    manifest = project / "target" / "manifest.json"
    assert not manifest_is_current(manifest, "duckdb", project)

    _write_manifest(manifest, "duckdb")
    older = manifest.stat().st_mtime - 60
    os.utime(model, (older, older))
    # Parsed from another checkout of the project, whose files are just as old: parse again.
    other_checkout = tmp_path / "release" / "dbt_project"
    record_parsed_project(manifest, other_checkout)
    assert not manifest_is_current(manifest, "duckdb", project)
    record_parsed_project(manifest, project)
    assert manifest_is_current(manifest, "duckdb", project)
    # Parsed over by a release that keeps no note of its checkout: parse again.
    manifest.write_text(
        json.dumps({"metadata": {"adapter_type": "duckdb", "env": {}, "invocation_id": "x"}}),
        "utf-8",
    )
    assert not manifest_is_current(manifest, "duckdb", project)
    _write_manifest(manifest, "duckdb")
    record_parsed_project(manifest, project)
    assert manifest_is_current(manifest, "duckdb", project)
    # Another engine's manifest carries its own relations: parse again.
    assert not manifest_is_current(manifest, "postgres", project)
    # dbt's own artefacts (compiled SQL under target/) change on every run and do not count.
    compiled = project / "target" / "compiled" / "fct_orders.sql"
    compiled.parent.mkdir(parents=True)
    compiled.write_text("select 1 as order_id", "utf-8")
    assert manifest_is_current(manifest, "duckdb", project)

    model.write_text("select 2 as order_id", "utf-8")
    os.utime(model, (older + 120, older + 120))
    assert not manifest_is_current(manifest, "duckdb", project)
    manifest.write_text("{not json", "utf-8")
    assert not manifest_is_current(manifest, "duckdb", project)


def test_each_dbt_step_keeps_its_artefacts_in_the_home_and_parses_only_changes(
    resolved_home: Settings,
) -> None:
    invocations = resolved_home.crm_home / "dbt" / "target" / "invocations"
    steps = sorted(folder.name.rsplit("-", 1)[0] for folder in invocations.iterdir())
    assert steps == sorted(DBT_BUILD_STEPS)
    for folder in invocations.iterdir():
        assert (folder / "run_results.json").exists()
        log = (folder / "dbt.log").read_text(encoding="utf-8")
        # The home's own parse state was reused: dbt never threw it away for a full parse.
        assert "Partial parsing enabled" in log, folder.name
        assert "Unable to do partial parsing" not in log, folder.name
        # The first step leaves its parse state to the next: they have nothing to parse.
        if not folder.name.startswith("dbt_staging"):
            assert "Nothing changed, skipping partial parsing" in log, folder.name


def test_only_the_newest_invocations_are_kept(tmp_path: Path) -> None:
    target = tmp_path / "target"
    target.mkdir()
    (target / PARTIAL_PARSE_FILE).write_bytes(b"parse state")
    made = []
    for run in range(KEPT_INVOCATIONS + 3):
        path = invocation_target_path(target, "dbt_marts", f"{run:08d}-run")
        stamp = 1_000_000 + run
        os.utime(path, (stamp, stamp))
        made.append(path)
    kept = sorted((target / "invocations").iterdir())
    assert kept == sorted(made[-KEPT_INVOCATIONS:])
    assert (made[-1] / PARTIAL_PARSE_FILE).read_bytes() == b"parse state"


def test_the_dbt_beside_this_python_is_not_started_to_learn_its_version(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    asked: list[list[str]] = []

    def dbt_version_output(command: list[str]) -> bytes:
        asked.append(command)
        return b"Core:\n  - installed: 1.9.4\n"

    monkeypatch.setattr(dagster_dbt.core.resource, "check_output", dbt_version_output)
    ours = InstalledDbtCliResource(
        project_dir=str(DBT_PROJECT_DIR), dbt_executable=dbt_executable()
    )
    assert ours._cli_version == version.parse(metadata.version("dbt-core"))
    assert asked == []

    # Another installation's dbt may be another version: it is asked.
    elsewhere = tmp_path / "bin" / "dbt"
    elsewhere.parent.mkdir()
    elsewhere.write_text("#!/bin/sh\n", "utf-8")
    elsewhere.chmod(0o755)
    foreign = InstalledDbtCliResource(
        project_dir=str(DBT_PROJECT_DIR), dbt_executable=str(elsewhere)
    )
    assert foreign._cli_version == version.parse("1.9.4")
    assert asked == [[str(elsewhere), "--version"]]


@pytest.mark.parametrize("crm_home", [None, "relative-home"], ids=["unset", "relative"])
def test_dbt_builds_in_the_home_the_settings_name_when_crm_home_is_unset_or_relative(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, crm_home: str | None
) -> None:
    # dbt runs in the project folder and its profile reads CRM_HOME: unset, the parse
    # stopped on the missing variable; relative, dbt built inside the project folder.
    monkeypatch.chdir(tmp_path)
    if crm_home is None:
        monkeypatch.delenv("CRM_HOME", raising=False)
    else:
        monkeypatch.setenv("CRM_HOME", crm_home)
    settings = Settings.from_env()
    expected_home = tmp_path / (crm_home or ".crm")
    assert settings.crm_home == expected_home

    project = prepared_dbt_project(settings)
    InstalledDbtCliResource(project_dir=project, dbt_executable=dbt_executable()).cli(
        ["seed", "--select", "segment_labels"], target_path=tmp_path / "seed-target"
    ).wait()

    assert project.manifest_path == expected_home / "dbt" / "target" / "manifest.json"
    assert project.manifest_path.exists()
    with duckdb.connect(str(expected_home / "warehouse.duckdb"), read_only=True) as conn:
        labels = conn.execute("select count(*) from reference.segment_labels").fetchall()[0][0]
    assert labels > 0
    assert not (DBT_PROJECT_DIR / (crm_home or ".crm")).exists()


def test_a_dbt_step_builds_no_dbt_adapter_inside_the_dagster_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # dagster-dbt built one before every step (2.7 s before a run's first) only for row
    # counts and column metadata, which no asset here fetches.
    monkeypatch.setenv("CRM_HOME", str(tmp_path / "home"))
    project = prepared_dbt_project(Settings.from_env())
    invocation = InstalledDbtCliResource(project_dir=project, dbt_executable=dbt_executable()).cli(
        ["seed", "--select", "segment_labels"], target_path=tmp_path / "seed-target"
    )
    invocation.wait()

    assert invocation.is_successful()
    assert invocation.adapter is None
    with duckdb.connect(str(tmp_path / "home" / "warehouse.duckdb"), read_only=True) as conn:
        labels = conn.execute("select count(*) from reference.segment_labels").fetchall()[0][0]
    assert labels > 0
