"""The dashboards on a real Apache Superset, started here from its own virtual environment:
deploy creates every dashboard and is idempotent, every chart's query returns the snapshot's
Chinese labels, personal data shows masked, and each dashboard renders in headless Chromium."""

from __future__ import annotations

import dataclasses
import re
import secrets
import socket
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest

from crm_warehouse.settings import Settings
from dashboards.bundle import object_uuid
from dashboards.deploy import chart_data, client_for, deploy, deployed, list_all
from dashboards.screenshots import take_screenshots
from dashboards.server import REPO_ROOT, SupersetSettings, down, up
from dashboards.spec import DASHBOARDS, DATASETS

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("superset")]

CJK = re.compile(r"[\u4e00-\u9fff]")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="module")
def superset(
    resolved_home: Settings, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[SupersetSettings]:
    server = SupersetSettings(
        url=f"http://127.0.0.1:{_free_port()}",
        venv=REPO_ROOT / ".venv-superset",
        home=tmp_path_factory.mktemp("superset"),
        admin_user="crm-test-admin",
        admin_password=secrets.token_urlsafe(16),
        workers=1,
    )
    up(server)
    try:
        yield server
    finally:
        down(server)


@pytest.fixture(scope="module")
def serving_path(resolved_home: Settings) -> Path:
    return resolved_home.serving_dir / "serving.duckdb"


def _counts(superset: SupersetSettings) -> dict[str, int]:
    client = client_for(superset)
    return {
        resource: len(list_all(client, resource, ["id"]))
        for resource in ("dashboard", "chart", "dataset", "database")
    }


def test_deploy_creates_every_dashboard_and_deploying_again_changes_nothing(
    superset: SupersetSettings, serving_path: Path
) -> None:
    first = deploy(superset, serving_path)
    assert set(first.dashboards) == {dashboard.slug for dashboard in DASHBOARDS}
    assert len(first.charts) == sum(len(dashboard.charts) for dashboard in DASHBOARDS) == 21
    assert set(first.datasets) == {dataset.name for dataset in DATASETS}
    counts = _counts(superset)
    assert counts == {"dashboard": 5, "chart": 21, "dataset": 7, "database": 1}

    # A chart changed by hand is put back in place by the next deploy, under the same id.
    client = client_for(superset)
    chart_id = first.charts["customers_by_tier"]
    client.put(f"{client.base_url}/chart/{chart_id}", json={"slice_name": "tampered"})
    second = deploy(superset, serving_path)
    assert second == first
    assert _counts(superset) == counts
    chart = client.get(f"{client.base_url}/chart/{chart_id}").json()["result"]
    assert chart["slice_name"] == "按价值等级 By value tier"


def test_every_chart_query_returns_the_snapshots_chinese_labels(
    superset: SupersetSettings, serving_path: Path
) -> None:
    deploy(superset, serving_path)
    client = client_for(superset)
    ids = deployed(client).charts
    with duckdb.connect(str(serving_path), read_only=True) as serving:
        for dashboard in DASHBOARDS:
            for chart in dashboard.charts:
                rows = chart_data(client, ids[chart.key])
                assert rows, chart.key
                labels = [
                    column
                    for column in (*chart.dimensions, *chart.raw_columns, chart.series)
                    if column and (column.endswith(("_label", "_name")) or column == "clv_band")
                ]
                for column in labels:
                    shown = {row[column] for row in rows if row[column] is not None}
                    truth = {
                        row[0]
                        for row in serving.execute(
                            f"select distinct {column} from ({chart.dataset.sql})"
                        ).fetchall()
                    }
                    assert shown and shown <= truth, (chart.key, column)
                    assert any(CJK.search(value) for value in shown), (chart.key, column)


def test_superset_reads_the_masked_serving_snapshot_read_only(
    superset: SupersetSettings, serving_path: Path, resolved_home: Settings
) -> None:
    deployed_now = deploy(superset, serving_path)
    client = client_for(superset)
    database = client.get(
        f"{client.base_url}/database/{deployed_now.database_id}/connection"
    ).json()["result"]
    assert database["sqlalchemy_uri"] == f"duckdb:///{serving_path}"
    assert database["allow_dml"] is False
    _columns, rows = client.run(
        deployed_now.database_id,
        "select full_name, phone_e164, email from main.v1_customer_360 "
        "where phone_e164 is not null and email is not null limit 50",
    )
    assert len(rows) >= 50
    for row in rows:
        assert re.fullmatch(r"1\d{2}\*{4}\d{4}", row["phone_e164"]), row
        assert re.fullmatch(r".\*+", row["full_name"]), row
        assert "***@" in row["email"], row
    refused = client.post(
        f"{client.base_url}/sqllab/execute/",
        json={"database_id": deployed_now.database_id, "sql": "delete from main.v1_customer_360"},
    )
    assert refused.status_code >= 400


def test_each_dashboard_renders_with_chinese_glyphs_in_headless_chromium(
    superset: SupersetSettings, serving_path: Path, resolved_home: Settings
) -> None:
    deploy(superset, serving_path)
    shots = take_screenshots(superset, resolved_home.reports_dir / "dashboards")
    assert [shot.slug for shot in shots] == [dashboard.slug for dashboard in DASHBOARDS]
    for shot, dashboard in zip(shots, DASHBOARDS, strict=True):
        assert shot.rendered, shot
        assert shot.charts == len(dashboard.charts), shot
        assert CJK.search(shot.title), shot
        assert shot.path.stat().st_size > 30_000, shot


def test_a_refused_dashboard_login_fails_at_once_with_what_superset_said(
    superset: SupersetSettings, tmp_path: Path
) -> None:
    wrong = dataclasses.replace(superset, admin_password="not-" + superset.password())
    with pytest.raises(RuntimeError) as refused:
        take_screenshots(wrong, tmp_path)
    message = str(refused.value)
    assert message.count("refused at ") == 3, message
    assert "/login/?next=" in message, message
    assert '"POST /login/' in message, message  # the access log's tail, for the operator
    assert not list(tmp_path.glob("*.png"))


def test_object_uuids_never_change_so_a_redeploy_finds_its_objects() -> None:
    # Derived from the key alone: a new namespace or scheme would duplicate every object.
    assert object_uuid("chart", "funnel") == "2511d767-f9e1-568c-aea0-4b9d476c7b90"
