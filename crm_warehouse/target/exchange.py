"""Which tables a dbt build on PostgreSQL needs from the working store, and gives back.

A dbt build reads dbt sources (raw, identity, ml: written by the Python steps into DuckDB)
and writes models, seeds and snapshots. On the postgres target the sources it reads go to
PostgreSQL first and what it built comes back, read off dbt's manifest, never listed by hand.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

from crm_warehouse.target.postgres import Table

BUILT_RESOURCE_TYPES = ("model", "seed", "snapshot")


def source_tables_read(manifest_path: Path, built: Iterable[Table]) -> list[Table]:
    """The dbt sources the `built` models read directly, as `(schema, table)`, sorted."""
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    wanted = set(built)
    read: set[Table] = set()
    for node in manifest["nodes"].values():
        if node["resource_type"] not in BUILT_RESOURCE_TYPES:
            continue
        if (node["schema"], node.get("alias") or node["name"]) not in wanted:
            continue
        for upstream in node.get("depends_on", {}).get("nodes", []):
            if upstream.startswith("source."):
                source = manifest["sources"][upstream]
                read.add((source["schema"], source["identifier"]))
    return sorted(read)


def built_tables(manifest_path: Path) -> list[Table]:
    """Every relation the dbt project builds (models, seeds, snapshots), sorted."""
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    return sorted(
        (node["schema"], node.get("alias") or node["name"])
        for node in manifest["nodes"].values()
        if node["resource_type"] in BUILT_RESOURCE_TYPES
        and node["config"].get("materialized") != "ephemeral"
    )
