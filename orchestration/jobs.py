"""Jobs. The warehouse takes one writer at a time, so the pipeline runs in one process."""

from __future__ import annotations

import dagster as dg

crm_pipeline = dg.define_asset_job(
    "crm_pipeline",
    selection=dg.AssetSelection.all(),
    description="Ingest every source, then build and test the dbt models, end to end.",
    executor_def=dg.in_process_executor,
)
