"""The serving snapshot: what downstream apps and dashboards read, never the warehouse.

Each publish writes a new DuckDB file under `CRM_HOME/serving/snapshots/`:
- the public tables in schema `published`, with personal data masked as they are copied;
- the versioned views `main.v1_<table>` that apps query, with explicit columns.

Then it points `CRM_HOME/serving/serving.duckdb` (a symlink) at the new file with one atomic
rename. A reader that opened the old file keeps reading it, whole, until it closes. The
newest `keep` snapshots stay on disk for `rollback`.

An unmasked twin (`serving_unmasked.duckdb`) is written only when a Unix group is
configured for it (`CRM_SERVING_UNMASKED_GROUP`). It is readable by that group alone
(mode 640). DuckDB has no roles, so the file system is the access control.
"""

from __future__ import annotations

import grp
import json
import os
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb

from crm_warehouse.publish.masking import MASKS

CONTRACT_VERSION = "v1"
# Snapshots are written in a storage format DuckDB 1.4 and later read, so readers that pin an
# older DuckDB than ours (Superset's driver, an app's) can open them.
SERVING_STORAGE_VERSION = "v1.4.0"
REFRESH = "daily, after each pipeline run whose blocking checks pass"


@dataclass(frozen=True)
class ServingTable:
    name: str
    source: str
    description: str
    # column → kind of personal data (a key of masking.MASKS)
    personal: dict[str, str] = field(default_factory=dict)


SERVING_TABLES: tuple[ServingTable, ...] = (
    ServingTable(
        "customer_360",
        "marts.customer_360",
        "One row per customer: who they are, what they bought, how they were served.",
        {"full_name": "name", "phone_e164": "phone", "email": "email", "birth_date": "birth_date"},
    ),
    ServingTable(
        "customer_segments",
        "marts.customer_segments",
        "RFM, value tier, loyalty, service strategy, lifecycle stage per customer.",
    ),
    ServingTable(
        "customer_scores",
        "marts.customer_scores",
        "Churn risk with reasons, lifetime value and the next action per customer.",
    ),
    ServingTable(
        "customer_alerts",
        "marts.fct_customer_alerts",
        "Customer-change alerts (客户异动) by day, kind, severity and owner.",
    ),
    ServingTable(
        "customer_care_list",
        "marts.customer_care_list",
        "Birthdays and membership anniversaries in the next days, for consenting customers.",
        {"full_name": "name", "phone_e164": "phone", "email": "email"},
    ),
    ServingTable(
        "customer_id_map",
        "marts.dim_customer_id_map",
        "Every customer_id ever issued and the current id it resolves to.",
    ),
    ServingTable(
        "service_kpis_daily",
        "marts.fct_service_kpis_daily",
        "Service-centre KPIs per day, queue and agent.",
    ),
    ServingTable(
        "campaign_performance",
        "marts.fct_campaign_performance",
        "Reach, funnel, attributed revenue, cost and ROI per campaign and channel.",
    ),
)


@dataclass(frozen=True)
class Published:
    snapshot: Path
    unmasked: Path | None
    rows: dict[str, int]
    removed: list[Path]


def _layout(serving_dir: Path) -> tuple[Path, Path, Path]:
    return (
        serving_dir / "snapshots",
        serving_dir / "serving.duckdb",
        serving_dir / "serving_unmasked.duckdb",
    )


def _columns(conn: duckdb.DuckDBPyConnection, relation: str) -> list[tuple[str, str]]:
    return [(row[0], row[1]) for row in conn.execute(f"describe {relation}").fetchall()]


def _write_snapshot(
    warehouse: duckdb.DuckDBPyConnection, path: Path, *, masked: bool
) -> dict[str, int]:
    """Copy the public tables into a new DuckDB file at `path`, masked or not."""
    home_catalog = warehouse.execute("select current_database()").fetchall()[0][0]
    warehouse.execute(
        f"attach '{path.as_posix()}' as serving_snapshot "
        f"(storage_version '{SERVING_STORAGE_VERSION}')"
    )
    rows: dict[str, int] = {}
    try:
        warehouse.execute("create schema serving_snapshot.published")
        for table in SERVING_TABLES:
            columns = _columns(warehouse, table.source)
            selected = ", ".join(
                f"{MASKS[table.personal[name]](name)} as {name}"
                if masked and name in table.personal
                else name
                for name, _ in columns
            )
            warehouse.execute(
                f"create table serving_snapshot.published.{table.name} as "
                f"select {selected} from {table.source}"
            )
            rows[table.name] = warehouse.execute(
                f"select count(*) from serving_snapshot.published.{table.name}"
            ).fetchall()[0][0]
        # Views bind in the catalog they are created in, so create them from inside it.
        warehouse.execute("use serving_snapshot")
        for table in SERVING_TABLES:
            names = ", ".join(name for name, _ in _columns(warehouse, f"published.{table.name}"))
            warehouse.execute(
                f"create view {CONTRACT_VERSION}_{table.name} as "
                f"select {names} from published.{table.name}"
            )
        warehouse.execute("checkpoint")
    finally:
        warehouse.execute(f"use {home_catalog}")
        warehouse.execute("detach serving_snapshot")
    return rows


def _point(link: Path, target: Path) -> None:
    """Make `link` a symlink to `target` with one atomic rename."""
    staging = link.with_name(f".{link.name}.{os.getpid()}")
    staging.unlink(missing_ok=True)
    staging.symlink_to(target.relative_to(link.parent))
    os.replace(staging, link)


def publish(
    warehouse: duckdb.DuckDBPyConnection,
    serving_dir: Path,
    *,
    keep: int = 5,
    unmasked_group: str | None = None,
    manifest_path: Path | None = None,
) -> Published:
    """Write a new snapshot from the warehouse, swap it in and prune old ones."""
    snapshots, link, unmasked_link = _layout(serving_dir)
    snapshots.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    snapshot = snapshots / f"serving-{stamp}.duckdb"
    rows = _write_snapshot(warehouse, snapshot, masked=True)
    snapshot.chmod(0o644)
    unmasked: Path | None = None
    if unmasked_group:
        group = grp.getgrnam(unmasked_group).gr_gid
        unmasked = snapshots / f"serving-unmasked-{stamp}.duckdb"
        _write_snapshot(warehouse, unmasked, masked=False)
        os.chown(unmasked, -1, group)
        unmasked.chmod(0o640)
    write_contract(warehouse, serving_dir, manifest_path)
    _point(link, snapshot)
    if unmasked is not None:
        _point(unmasked_link, unmasked)
    removed = _prune(serving_dir, keep)
    _log(serving_dir, {"published": snapshot.name, "unmasked": bool(unmasked), "rows": rows})
    return Published(snapshot, unmasked, rows, removed)


def _history(serving_dir: Path, prefix: str) -> list[Path]:
    snapshots, _, _ = _layout(serving_dir)
    return sorted(snapshots.glob(f"{prefix}-2*.duckdb"))


def current(serving_dir: Path) -> Path | None:
    """The snapshot the serving path points at now."""
    _, link, _ = _layout(serving_dir)
    return link.resolve() if link.is_symlink() else None


def _prune(serving_dir: Path, keep: int) -> list[Path]:
    removed = []
    live = {p.resolve() for p in _layout(serving_dir)[1:] if p.is_symlink()}
    for prefix in ("serving", "serving-unmasked"):
        for old in _history(serving_dir, prefix)[:-keep]:
            if old.resolve() not in live:
                old.unlink()
                removed.append(old)
    return removed


def rollback(serving_dir: Path) -> Path:
    """Point the serving path back at the snapshot published before the current one."""
    _, link, unmasked_link = _layout(serving_dir)
    live = current(serving_dir)
    history = _history(serving_dir, "serving")
    older = [p for p in history if live is None or p.name < live.name]
    if not older:
        raise FileNotFoundError(f"no snapshot older than {live} under {serving_dir}")
    target = older[-1]
    _point(link, target)
    twin = target.with_name(target.name.replace("serving-", "serving-unmasked-", 1))
    if unmasked_link.is_symlink() and twin.exists():
        _point(unmasked_link, twin)
    _log(serving_dir, {"rolled_back_to": target.name, "from": live.name if live else None})
    return target


def _log(serving_dir: Path, event: dict[str, Any]) -> None:
    entry = {"at": datetime.now(UTC).isoformat(timespec="seconds"), **event}
    with (serving_dir / "publish_log.jsonl").open("a", encoding="utf-8") as log:
        log.write(json.dumps(entry, ensure_ascii=False) + "\n")


def write_contract(
    warehouse: duckdb.DuckDBPyConnection, serving_dir: Path, manifest_path: Path | None
) -> Path:
    """`contract.json` and `contract.md` beside the snapshots: every view apps may query,
    its columns, types, meaning (from the dbt docs), masking and refresh cadence."""
    described = _dbt_descriptions(manifest_path)
    views = []
    for table in SERVING_TABLES:
        model = table.source.split(".", 1)[1]
        docs = described.get(model, {})
        views.append(
            {
                "view": f"{CONTRACT_VERSION}_{table.name}",
                "description": table.description,
                "refresh": REFRESH,
                "columns": [
                    {
                        "name": name,
                        "type": data_type,
                        "description": docs.get(name, ""),
                        "masking": table.personal.get(name, "none"),
                    }
                    for name, data_type in _columns(warehouse, table.source)
                ],
            }
        )
    contract = {
        "version": CONTRACT_VERSION,
        "file": "serving.duckdb (open read-only)",
        "masking": {
            "name": "first character, the rest as * (张三丰 → 张**)",
            "phone": "3-digit prefix and last 4 digits (138****5678)",
            "email": "first character and domain (z***@qq.com)",
            "birth_date": "the year only (YYYY-01-01)",
        },
        "views": views,
    }
    serving_dir.mkdir(parents=True, exist_ok=True)
    path = serving_dir / "contract.json"
    path.write_text(json.dumps(contract, indent=2, ensure_ascii=False), encoding="utf-8")
    (serving_dir / "contract.md").write_text(_contract_markdown(contract), encoding="utf-8")
    return path


def _dbt_descriptions(manifest_path: Path | None) -> dict[str, dict[str, str]]:
    if manifest_path is None or not manifest_path.exists():
        return {}
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    return {
        node["name"]: {
            name: column.get("description", "") for name, column in node["columns"].items()
        }
        for node in manifest["nodes"].values()
        if node["resource_type"] == "model"
    }


def _contract_markdown(contract: dict[str, Any]) -> str:
    lines = [
        f"# Serving contract {contract['version']}",
        "",
        f"Open `{contract['file']}`. Query the views below; they keep their columns within",
        f"`{contract['version']}`.",
        "",
        "Masking for the default reader: "
        + "; ".join(f"{k}: {v}" for k, v in contract["masking"].items())
        + ".",
        "",
    ]
    for view in contract["views"]:
        lines += [
            f"## `{view['view']}`",
            "",
            f"{view['description']} Refresh: {view['refresh']}.",
            "",
            "| column | type | masking | meaning |",
            "|---|---|---|---|",
        ]
        lines += [
            f"| `{c['name']}` | {c['type']} | {c['masking']} | "
            f"{c['description'].replace('|', '/').replace(chr(10), ' ')} |"
            for c in view["columns"]
        ]
        lines.append("")
    return "\n".join(lines)
