"""A real, throwaway PostgreSQL server for the postgres-target tests (STACK.md's recipe).

The server runs from the system's PostgreSQL binaries (`.ci/run` installs them) in a fresh
cluster under /tmp, on a free loopback port, and is stopped when the session ends. Each test
gets its own database in it.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import duckdb
import psycopg2
import pytest

from crm_warehouse.erasure.keys import normalize
from crm_warehouse.settings import Settings
from crm_warehouse.target.postgres import PostgresConnection
from orchestration.run import run_pipeline


def _postgres_bin() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not found:
        pytest.fail("PostgreSQL server binaries not found: apt-get install postgresql (.ci/run)")
    return Path(found[-1]).parent


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _as_server_user(command: list[str]) -> list[str]:
    # initdb and postgres refuse to run as root; CI runs as root, a developer usually not.
    return ["runuser", "-u", "postgres", "--", *command] if os.geteuid() == 0 else command


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresConnection]:
    """The superuser's connection to a server of our own."""
    bin_dir = _postgres_bin()
    # Not under pytest's tmp (mode 0700, root's): the server's user must reach its folder.
    folder = Path(tempfile.mkdtemp(prefix="crm-pg-"))
    data, sockets = folder / "data", folder / "sockets"
    data.mkdir()
    sockets.mkdir()
    if os.geteuid() == 0:
        shutil.chown(folder, "postgres", "postgres")
        shutil.chown(data, "postgres", "postgres")
        shutil.chown(sockets, "postgres", "postgres")
    port = _free_port()
    subprocess.run(
        _as_server_user(
            [
                str(bin_dir / "initdb"),
                "-D",
                str(data),
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--locale=C.UTF-8",
            ]
        ),
        check=True,
        capture_output=True,
    )
    pg_ctl = str(bin_dir / "pg_ctl")
    subprocess.run(
        _as_server_user(
            [
                pg_ctl,
                "-D",
                str(data),
                "-l",
                str(data / "server.log"),
                "-w",
                "start",
                "-o",
                f"-p {port} -k {sockets} -c listen_addresses=127.0.0.1 -c fsync=off",
            ]
        ),
        check=True,
        capture_output=True,
    )
    try:
        yield PostgresConnection(host="127.0.0.1", port=port, user="postgres", database="postgres")
    finally:
        subprocess.run(
            _as_server_user([pg_ctl, "-D", str(data), "-m", "fast", "-w", "stop"]),
            check=False,
            capture_output=True,
        )
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def postgres_database(postgres_server: PostgresConnection) -> PostgresConnection:
    """A new, empty database on the test server, owned by a login role `crm`."""
    name = f"crm_{uuid.uuid4().hex[:12]}"
    conn = psycopg2.connect(
        host=postgres_server.host, port=postgres_server.port, user="postgres", dbname="postgres"
    )
    conn.autocommit = True
    with conn.cursor() as cursor:
        cursor.execute("select 1 from pg_roles where rolname = 'crm'")
        if not cursor.fetchone():
            cursor.execute("create role crm login")
        cursor.execute(f'create database "{name}" owner crm')
    conn.close()
    return PostgresConnection(
        host=postgres_server.host, port=postgres_server.port, user="crm", database=name
    )


@pytest.fixture
def postgres_env(
    postgres_database: PostgresConnection, monkeypatch: pytest.MonkeyPatch
) -> PostgresConnection:
    """The test's database as the `CRM_PG_*` variables dbt's profile and Settings read."""
    monkeypatch.setenv("CRM_PG_HOST", postgres_database.host)
    monkeypatch.setenv("CRM_PG_PORT", str(postgres_database.port))
    monkeypatch.setenv("CRM_PG_USER", postgres_database.user)
    monkeypatch.setenv("CRM_PG_DATABASE", postgres_database.database)
    monkeypatch.delenv("CRM_PG_PASSWORD", raising=False)
    return postgres_database


# What business users read, summed so that any difference in any row shows.
SEGMENTS = "select {0}, count(*) from marts.customer_segments group by 1 order by 1"
FIGURES = {
    "customers": "select count(*) from marts.dim_customers",
    "value tiers": SEGMENTS.format("value_tier"),
    "lifecycle": SEGMENTS.format("lifecycle_stage"),
    "rfm segments": SEGMENTS.format("rfm_segment"),
    "strategies": SEGMENTS.format("service_strategy"),
    "service KPIs": "select sum(calls_offered), sum(calls_answered), sum(calls_abandoned), "
    "round(avg(answer_rate), 9), round(avg(service_level), 9), round(avg(csat), 9) "
    "from marts.fct_service_kpis_daily",
    "campaigns": "select sum(reached), sum(converted), round(sum(attributed_revenue), 2) "
    "from marts.fct_campaign_performance",
    "alerts": "select alert_kind, severity, count(*) from marts.fct_customer_alerts "
    "group by 1, 2 order by 1, 2",
    "orders": "select count(*), round(sum(margin_amount), 2) from marts.fct_orders",
    "churn risk": "select churn_risk_band, count(*), round(sum(churn_probability), 4) "
    "from ml.churn_scores group by 1 order by 1",
    "lifetime value": "select count(*), round(sum(predicted_clv), 2) from ml.customer_clv",
}


def _figures(warehouse: Path) -> dict[str, list[tuple[object, ...]]]:
    with duckdb.connect(str(warehouse), read_only=True) as conn:
        return {name: conn.execute(query).fetchall() for name, query in FIGURES.items()}


@pytest.fixture
def pipeline_on(
    resolved_home: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Callable[..., Settings]:
    """Run the whole pipeline with `CRM_TARGET=<target>` in a fresh home, on the sources the
    DuckDB run (`resolved_home`) read, and check that it ran every step and that business
    users read the same figures (`FIGURES`) as from the DuckDB run. `before_run` may put
    something in the home first. Returns the home's settings."""

    def run(target: str, before_run: Callable[[Settings], None] | None = None) -> Settings:
        home = tmp_path / "crm"
        shutil.copytree(resolved_home.sources_dir, home / "sources")
        monkeypatch.setenv("CRM_HOME", str(home))
        monkeypatch.setenv("CRM_TARGET", target)
        settings = Settings.from_env()
        assert settings.target == target
        if before_run is not None:
            before_run(settings)

        outcome = run_pipeline(settings)

        assert outcome.success, outcome.failed_steps
        assert not outcome.skipped_steps, outcome.skipped_steps
        on_target, on_duckdb = (
            _figures(settings.warehouse_path),
            _figures(resolved_home.warehouse_path),
        )
        assert on_target["customers"][0][0] > 1_000
        assert on_target == on_duckdb
        return settings

    return run


def _erasure_subject(settings: Settings) -> tuple[str, list[str]]:
    with duckdb.connect(str(settings.warehouse_path), read_only=True) as conn:
        customer_id, phone, email = conn.execute(
            "select customer_id, phone_e164, email from marts.customer_360 "
            "where phone_e164 is not null and email is not null and order_count >= 2 "
            "order by customer_id limit 1"
        ).fetchone()
    return customer_id, [normalize("phone", phone) or "", email, customer_id]


@pytest.fixture
def erasure_subject() -> Callable[[Settings], tuple[str, list[str]]]:
    """A customer of a home with a phone, an e-mail and orders, and the strings (phone as
    stored, e-mail, id) that must not be found anywhere once they are erased."""
    return _erasure_subject
