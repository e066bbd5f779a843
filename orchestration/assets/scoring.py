"""Churn risk and lifetime value as one asset between the marts and the scored marts."""

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dagster as dg
from dagster_duckdb import DuckDBResource

from crm_warehouse.settings import Settings
from crm_warehouse.target.spark import local_spark_session, spark_table_folder
from ml.features import SCORING_TABLES
from ml.registry import DEFAULT_TOLERANCE
from ml.report import write_report
from ml.scoring import (
    NotEnoughHistory,
    ScoringConfig,
    ScoringRun,
    ensure_tables,
    memory_limit,
    score,
    score_from,
    write_scores,
)

CHURN_SCORES = dg.AssetKey(["ml", "churn_scores"])
CUSTOMER_CLV = dg.AssetKey(["ml", "customer_clv"])
MODEL_RUNS = dg.AssetKey(["ml", "model_runs"])

# What the features and the lifetime-value fit read (ml/features.py, ml/scoring.py).
SCORING_INPUTS = [dg.AssetKey(list(table)) for table in SCORING_TABLES]


class ScoringRunConfig(dg.Config):
    """A customer has churned when they buy nothing for `churn_window_days`; lifetime value
    is over `clv_horizon_days`; a candidate churn model more than `promotion_tolerance`
    worse than the live one on the holdout (ROC AUC or Brier) is not promoted. The models
    are refitted once the live ones are `refit_every_days` days of data old (unset:
    CRM_SCORING_REFIT_DAYS; 0: on every run); the runs between score with the live ones."""

    churn_window_days: int = 30
    clv_horizon_days: int = 365
    promotion_tolerance: float = DEFAULT_TOLERANCE
    refit_every_days: int | None = None


@dg.multi_asset(
    specs=[
        dg.AssetSpec(
            CHURN_SCORES,
            deps=SCORING_INPUTS,
            description="Each buyer's calibrated churn probability, risk band and top reasons "
            "(bilingual), from the live churn model.",
            kinds={"duckdb", "python", "lightgbm"},
        ),
        dg.AssetSpec(
            CUSTOMER_CLV,
            deps=SCORING_INPUTS,
            description="Each buyer's BG/NBD + Gamma–Gamma lifetime value: probability alive, "
            "expected purchases and value over the horizon.",
            kinds={"duckdb", "python"},
        ),
        dg.AssetSpec(
            MODEL_RUNS,
            deps=SCORING_INPUTS,
            description="One row per model per scoring run: version, promotion and metrics.",
            kinds={"duckdb"},
        ),
    ],
    group_name="ml",
    name="customer_scoring",
)
def customer_scoring(
    context: dg.AssetExecutionContext,
    config: ScoringRunConfig,
    warehouse: DuckDBResource,
    settings: dg.ResourceParam[Settings],
) -> Iterator[dg.MaterializeResult]:
    """Train a churn candidate when one is due, promote it only if it is not worse on the
    holdout, score every buyer, fit lifetime value when due (predict with the live fit
    otherwise), and write the report under CRM_HOME/reports/scoring."""
    scoring_config = ScoringConfig(
        churn_window_days=config.churn_window_days,
        clv_horizon_days=config.clv_horizon_days,
        promotion_tolerance=config.promotion_tolerance,
        refit_every_days=(
            settings.scoring_refit_days
            if config.refit_every_days is None
            else config.refit_every_days
        ),
    )
    # The `ml` tables exist before any engine scores: a young warehouse skips scoring
    # (below), and the scored marts still read them, empty, as their sources.
    with warehouse.get_connection() as conn:
        ensure_tables(conn)
    try:
        if settings.scoring_engine == "spark":
            run, frames = _score_on_spark(context, warehouse, settings, scoring_config)
        else:
            with (
                warehouse.get_connection() as conn,
                memory_limit(conn, settings.scoring_memory_limit),
            ):
                run, frames = score(conn, settings.models_dir, scoring_config)
                write_scores(conn, run, frames)
    except NotEnoughHistory as reason:
        # A young warehouse: the tables stay as they are and the marts fall back to
        # historical value, rather than failing the whole pipeline.
        context.log.warning("scoring skipped: %s", reason)
        for key in (CHURN_SCORES, CUSTOMER_CLV, MODEL_RUNS):
            yield dg.MaterializeResult(asset_key=key, metadata={"skipped": str(reason)})
        return
    report = write_report(run, frames["holdout"], settings.reports_dir)
    summary = run.summary()
    context.log.info(
        "churn %s (candidate %s, %s: %s); holdout ROC AUC %s",
        run.churn_version,
        run.candidate_version,
        "promoted" if run.promoted else "not promoted",
        run.promotion_reason,
        run.candidate_metrics["roc_auc"],
    )
    holdout = run.candidate_metrics
    yield dg.MaterializeResult(
        asset_key=CHURN_SCORES,
        metadata={
            "dagster/row_count": run.scored_customers,
            "engine": settings.scoring_engine,
            "as_of": summary["as_of"],
            "live_version": run.churn_version,
            "candidate_version": run.candidate_version,
            "promoted": run.promoted,
            "promotion_reason": run.promotion_reason,
            "refitted": run.churn_refitted,
            "holdout_roc_auc": holdout["roc_auc"],
            "holdout_pr_auc": holdout["pr_auc"],
            "holdout_brier": holdout["brier"],
            "holdout_churn_rate": holdout["churn_rate"],
            "risk_bands": run.risk_bands,
            "calibration": dg.MetadataValue.json(holdout["calibration"]),
            "report": dg.MetadataValue.path(str(report / "report.html")),
        },
    )
    clv_holdout = run.clv["holdout"]
    yield dg.MaterializeResult(
        asset_key=CUSTOMER_CLV,
        metadata={
            "dagster/row_count": run.valued_customers,
            "version": run.clv_version,
            "refitted": run.clv_refitted,
            "bg_nbd": dg.MetadataValue.json(run.clv["bg_nbd"]),
            "gamma_gamma": dg.MetadataValue.json(run.clv["gamma_gamma"]),
            "holdout_mean_absolute_error": clv_holdout["mean_absolute_error"],
            "holdout_predicted_purchases": clv_holdout["predicted_total"],
            "holdout_actual_purchases": clv_holdout["actual_total"],
            "by_repeat_purchases": dg.MetadataValue.json(clv_holdout["by_repeat_purchases"]),
            "report": dg.MetadataValue.path(str(report / "report.html")),
        },
    )
    yield dg.MaterializeResult(asset_key=MODEL_RUNS, metadata={"report": str(report)})


def _score_on_spark(
    context: dg.AssetExecutionContext,
    warehouse: DuckDBResource,
    settings: Settings,
    config: ScoringConfig,
) -> tuple[ScoringRun, dict[str, Any]]:
    """Score on a Spark session over the tables dbt built on Spark, then load what Spark
    wrote into the DuckDB `ml` tables, where the gate, the scored marts' sources and
    publishing read them. Spark's Parquet is removed once loaded: the `ml` tables are the
    record, and an erasure then has one copy less to reach."""
    from ml.spark_scoring import SparkScoringData, register_tables

    work = settings.scratch_dir / "scoring-spark"
    with local_spark_session("crm-warehouse scoring", work) as spark:
        register_tables(
            spark,
            {table: spark_table_folder(settings.crm_home, *table) for table in SCORING_TABLES},
        )
        out = Path(tempfile.mkdtemp(prefix="scores-", dir=work))
        try:
            data = SparkScoringData(spark, out, settings.scoring_driver_rows)
            run, frames = score_from(data, settings.models_dir, config)
            with warehouse.get_connection() as conn:
                write_scores(conn, run, frames)
        finally:
            shutil.rmtree(out, ignore_errors=True)
    context.log.info("scored on Spark; rows the driver received: %s", data.driver_samples)
    return run, frames


SCORING_ASSETS = [customer_scoring]
