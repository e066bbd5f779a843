"""A run parses the dbt project again exactly when its manifest is stale."""

from __future__ import annotations

import json
import os
from pathlib import Path

from orchestration.dbt_project import manifest_is_current


def _write_manifest(path: Path, adapter: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"metadata": {"adapter_type": adapter, "env": {}}}), "utf-8")


def test_a_manifest_is_stale_after_a_change_to_the_project_or_the_target(tmp_path: Path) -> None:
    project = tmp_path / "dbt_project"
    model = project / "models" / "marts" / "fct_orders.sql"
    model.parent.mkdir(parents=True)
    model.write_text("select 1 as order_id", "utf-8")
    manifest = project / "target" / "manifest.json"
    assert not manifest_is_current(manifest, "duckdb", project)

    _write_manifest(manifest, "duckdb")
    older = manifest.stat().st_mtime - 60
    os.utime(model, (older, older))
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
