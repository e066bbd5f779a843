"""Jobs. The warehouse takes one writer at a time, so the pipeline runs in one process."""

from __future__ import annotations

import dagster as dg

from orchestration.assets.scoring import customer_scoring

crm_pipeline = dg.define_asset_job(
    "crm_pipeline",
    selection=dg.AssetSelection.all(),
    description="Ingest every source, then build and test the dbt models, end to end.",
    executor_def=dg.in_process_executor,
)

crm_scoring = dg.define_asset_job(
    "crm_scoring",
    selection=dg.AssetSelection.assets(customer_scoring).downstream(),
    description="Retrain and score churn and lifetime value on the current marts, then "
    "rebuild the models that read the scores (customer_scores, segments, alerts).",
    executor_def=dg.in_process_executor,
)
