"""Shared fixtures: generated sources (made once per session, copied per test) and a fresh
CRM_HOME under pytest's tmp_path for every test."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest

from crm_warehouse.generate import generate
from crm_warehouse.settings import Settings
from orchestration.run import run_pipeline

# Small, but with a high defect rate so that every kind of bad row is planted.
SAMPLE_CUSTOMERS = 3_000
SAMPLE_DAYS = 20
SAMPLE_BAD_ROW_RATE = 0.03

# Variables that would point a test's home at someone else's sources or warehouse.
WHERE_VARIABLES = (
    "CRM_FORMS_DIR",
    "CRM_CALLCENTRE_DIR",
    "CRM_CAMPAIGNS_DIR",
    "CRM_SALES_URL",
    "CRM_TARGET",
)


@pytest.fixture(scope="session")
def sample_sources(tmp_path_factory: pytest.TempPathFactory) -> Path:
    sources = tmp_path_factory.mktemp("sample") / "sources"
    generate(sources, SAMPLE_CUSTOMERS, SAMPLE_DAYS, seed=7, bad_row_rate=SAMPLE_BAD_ROW_RATE)
    return sources


@pytest.fixture
def crm_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    home = tmp_path / "crm"
    home.mkdir()
    for name in WHERE_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("CRM_HOME", str(home))
    settings = Settings.from_env()
    settings.ensure_dirs()
    return settings


@pytest.fixture
def sourced_home(crm_home: Settings, sample_sources: Path) -> Settings:
    """A CRM_HOME holding its own copy of the sample sources."""
    shutil.copytree(sample_sources, crm_home.sources_dir)
    return crm_home


@pytest.fixture
def warehouse(crm_home: Settings) -> Iterator[duckdb.DuckDBPyConnection]:
    conn = duckdb.connect(str(crm_home.warehouse_path))
    yield conn
    conn.close()


# The pipeline end to end, once per session, for the identity and marts tests.
PIPELINE_CUSTOMERS = 4_000
PIPELINE_DAYS = 180  # churn scoring needs two 30-day windows and history before them


def _settings(home: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    for name in WHERE_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("CRM_HOME", str(home))
    settings = Settings.from_env()
    settings.ensure_dirs()
    return settings


@pytest.fixture(scope="session")
def resolved_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    """Generated sources run once through ingest, staging, identity and the marts."""
    home = tmp_path_factory.mktemp("identity") / "crm"
    # The environment points at this home only while it is built; tests read its Settings.
    with pytest.MonkeyPatch.context() as monkeypatch:
        settings = _settings(home, monkeypatch)
        generate(settings.sources_dir, PIPELINE_CUSTOMERS, PIPELINE_DAYS, seed=11)
        outcome = run_pipeline(settings)
    assert outcome.success, outcome.failed_steps
    assert not outcome.skipped_steps, outcome.skipped_steps
    yield settings


@pytest.fixture
def own_copy(resolved_home: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """A copy of the resolved home a test may change."""
    home = tmp_path / "crm"
    shutil.copytree(
        resolved_home.crm_home, home, symlinks=True, ignore=shutil.ignore_patterns("dagster")
    )
    return _settings(home, monkeypatch)
