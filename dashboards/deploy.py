"""`crm dashboards deploy`: put the dashboards onto a running Superset, idempotently.

Through superset-client (`supersetapiclient`): it logs in and keeps the session with its CSRF
token. Its own `assets.import_file` opens the file relative to the working directory and its
`databases.add` fails on Superset 6, so the bundle goes to the assets import endpoint through
the client's session, which overwrites every object by UUID.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import prison
from supersetapiclient.client import SupersetClient

from dashboards.bundle import DATABASE_NAME, build_bundle, object_uuid
from dashboards.server import SupersetSettings
from dashboards.spec import DASHBOARDS, DATASETS


class DeployError(RuntimeError):
    """Superset refused the bundle; the message carries its answer."""


@dataclass(frozen=True)
class Deployed:
    dashboards: dict[str, int]  # slug -> id
    charts: dict[str, int]  # chart key -> id
    datasets: dict[str, int]  # dataset name -> id
    database_id: int


def client_for(superset: SupersetSettings) -> SupersetClient:
    host = urlsplit(superset.url).hostname or ""
    if superset.url.startswith("http://") and host in ("127.0.0.1", "localhost", "::1"):
        # oauthlib insists on TLS; a server on this machine's loopback is the one exception.
        os.environ.setdefault("OAUTHLIB_INSECURE_TRANSPORT", "1")
    return SupersetClient(superset.url, superset.admin_user, superset.password())


def list_all(client: SupersetClient, resource: str, columns: list[str]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    page = 0
    while True:
        query = prison.dumps({"columns": columns, "page": page, "page_size": 100})
        response = client.get(f"{client.base_url}/{resource}/?q={query}")
        response.raise_for_status()
        result = response.json()["result"]
        rows += result
        if len(result) < 100:
            return rows
        page += 1


def deploy(superset: SupersetSettings, serving_path: Path) -> Deployed:
    """Import the bundle, then look up what it created, by UUID."""
    client = client_for(superset)
    response = client.post(
        f"{client.base_url}/assets/import/",
        files={
            "bundle": ("crm_dashboards.zip", build_bundle(serving_path), "application/zip"),
            "passwords": (None, json.dumps({})),
        },
    )
    if response.status_code != 200:
        raise DeployError(f"Superset refused the bundle ({response.status_code}): {response.text}")
    return deployed(client)


def deployed(client: SupersetClient) -> Deployed:
    """Ids of this project's objects in Superset, found by their UUIDs."""
    dashboards = {
        row["uuid"]: row["id"] for row in list_all(client, "dashboard", ["id", "uuid", "slug"])
    }
    charts = {row["uuid"]: row["id"] for row in list_all(client, "chart", ["id", "uuid"])}
    datasets = {row["uuid"]: row["id"] for row in list_all(client, "dataset", ["id", "uuid"])}
    databases = {row["uuid"]: row["id"] for row in list_all(client, "database", ["id", "uuid"])}
    return Deployed(
        dashboards={
            d.slug: dashboards[object_uuid("dashboard", d.slug)]
            for d in DASHBOARDS
            if object_uuid("dashboard", d.slug) in dashboards
        },
        charts={
            c.key: charts[object_uuid("chart", c.key)]
            for d in DASHBOARDS
            for c in d.charts
            if object_uuid("chart", c.key) in charts
        },
        datasets={
            s.name: datasets[object_uuid("dataset", s.name)]
            for s in DATASETS
            if object_uuid("dataset", s.name) in datasets
        },
        database_id=databases.get(object_uuid("database", DATABASE_NAME), 0),
    )


def chart_data(client: SupersetClient, chart_id: int) -> list[dict[str, Any]]:
    """The rows a chart's saved query returns now."""
    response = client.get(f"{client.base_url}/chart/{chart_id}/data/")
    if response.status_code != 200:
        raise DeployError(f"chart {chart_id} data ({response.status_code}): {response.text}")
    return response.json()["result"][0]["data"]
