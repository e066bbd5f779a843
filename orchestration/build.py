"""How the one `Definitions` is put together from `Settings`."""

from __future__ import annotations

import dagster as dg
from dagster_duckdb import DuckDBResource

from crm_warehouse.settings import Settings
from orchestration.assets.dbt import build_dbt_assets
from orchestration.assets.identity import IDENTITY_ASSETS
from orchestration.assets.ingest import build_ingest_assets
from orchestration.assets.publish import PUBLISH_ASSETS
from orchestration.assets.scoring import SCORING_ASSETS
from orchestration.assets.sources import SOURCE_SPECS
from orchestration.checks import GATE_CHECKS, RECONCILIATION_CHECKS
from orchestration.dbt_project import (
    InstalledDbtCliResource,
    dbt_executable,
    prepared_dbt_project,
)
from orchestration.jobs import crm_pipeline, crm_scoring
from orchestration.operations import FRESHNESS_CHECKS, SENSORS, daily_schedule
from orchestration.partitions import crm_event_backfill, event_partitions


def build_definitions(settings: Settings, *, reparse_dbt: bool = False) -> dg.Definitions:
    settings.ensure_dirs()
    project = prepared_dbt_project(settings, reparse=reparse_dbt)
    return dg.Definitions(
        assets=[
            *SOURCE_SPECS,
            *build_ingest_assets(
                event_partitions(settings.source_timezone, settings.partitions_start)
            ),
            *IDENTITY_ASSETS,
            *SCORING_ASSETS,
            *build_dbt_assets(project),
            *PUBLISH_ASSETS,
        ],
        asset_checks=[*RECONCILIATION_CHECKS, *GATE_CHECKS, *FRESHNESS_CHECKS],
        jobs=[crm_pipeline, crm_scoring, crm_event_backfill],
        schedules=[daily_schedule(settings)],
        sensors=SENSORS,
        # Ad-hoc runs too (a materialisation or backfill from the UI or the CLI): the
        # warehouse takes one writer at a time, so steps run in one process, in order.
        executor=dg.in_process_executor,
        resources={
            "warehouse": DuckDBResource(
                database=str(settings.warehouse_path),
                connection_config=settings.duckdb_config(),
            ),
            "dbt": InstalledDbtCliResource(project_dir=project, dbt_executable=dbt_executable()),
            "settings": settings,
        },
    )
