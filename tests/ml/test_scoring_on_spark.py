"""Scoring on a real local Spark (ml/spark_scoring.py), over the scoring tables of the DuckDB
pipeline run written out as Parquet: the same model, the same churn scores and reasons, the
same lifetime values and holdout figures as on DuckDB; with a small driver budget the
models are fitted on a sample of customers and every customer is still scored."""

from __future__ import annotations

import shutil
from pathlib import Path

import duckdb
import pandas as pd
import pytest

from crm_warehouse.settings import Settings
from crm_warehouse.target.spark import export_table, local_spark_session
from ml.features import SCORING_TABLES
from ml.scoring import ScoringConfig, score, score_from, write_scores
from ml.spark_scoring import SparkScoringData, register_tables

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("spark")]

# Every run fits its own models, so the two engines' runs are compared fit for fit.
REFIT_EVERY_RUN = ScoringConfig(refit_every_days=0)


def _rows(table: object) -> pd.DataFrame:
    frame = table if isinstance(table, pd.DataFrame) else table.to_table().to_pandas()  # type: ignore[attr-defined]
    return frame.set_index("customer_id").sort_index()


def test_scoring_on_spark_gives_duckdbs_scores_and_bounds_the_driver(
    resolved_home: Settings, tmp_path: Path
) -> None:
    database = tmp_path / "warehouse.duckdb"
    shutil.copyfile(resolved_home.warehouse_path, database)
    folders = {table: tmp_path / "tables" / table[0] / table[1] for table in SCORING_TABLES}
    with duckdb.connect(str(database)) as conn:
        for table, folder in folders.items():
            export_table(conn, table, folder)
        duckdb_run, duckdb_frames = score(conn, tmp_path / "models-duckdb", REFIT_EVERY_RUN)

    with local_spark_session("test scoring", tmp_path / "spark") as spark:
        register_tables(spark, folders)
        data = SparkScoringData(spark, tmp_path / "scores")
        spark_run, spark_frames = score_from(data, tmp_path / "models-spark", REFIT_EVERY_RUN)
        spark_scores = _rows(spark_frames["churn_scores"])
        spark_clv = _rows(spark_frames["customer_clv"])
        with duckdb.connect(str(database)) as conn:
            write_scores(conn, spark_run, spark_frames)
            loaded = conn.execute("select count(*) from ml.churn_scores").fetchone()[0]  # type: ignore[index]

        sampled = SparkScoringData(spark, tmp_path / "scores-sampled", driver_rows=500)
        sampled_run, sampled_frames = score_from(
            sampled, tmp_path / "models-sampled", REFIT_EVERY_RUN
        )
        sampled_scores = _rows(sampled_frames["churn_scores"])

    duckdb_scores = _rows(duckdb_frames["churn_scores"])
    duckdb_clv = _rows(duckdb_frames["customer_clv"])
    # Everyone with an order is scored, once, on both engines, and DuckDB holds Spark's rows.
    assert len(duckdb_scores) > 1_000
    assert spark_scores.index.equals(duckdb_scores.index)
    assert loaded == len(duckdb_scores) == spark_run.scored_customers
    # The same examples trained the same model, so every customer reads the same.
    assert spark_run.candidate_metrics == duckdb_run.candidate_metrics
    assert spark_run.risk_bands == duckdb_run.risk_bands
    difference = (spark_scores["churn_probability"] - duckdb_scores["churn_probability"]).abs()
    assert difference.max() <= 1e-4
    for column in ("churn_risk_band", "churn_reasons_zh", "churn_reasons_en"):
        assert spark_scores[column].equals(duckdb_scores[column]), column
    assert (spark_scores["as_of_date"] == duckdb_scores["as_of_date"].dt.date).all()

    # BG/NBD fitted on the histories Spark counted: DuckDB's parameters to the optimiser's
    # precision, and so the same lifetime values to the cent.
    for name, value in duckdb_run.clv["bg_nbd"].items():
        assert spark_run.clv["bg_nbd"][name] == pytest.approx(value, rel=1e-6), name
    assert spark_clv.index.equals(duckdb_clv.index)
    assert (spark_clv["predicted_clv"] - duckdb_clv["predicted_clv"]).abs().max() <= 0.01
    assert (spark_clv["repeat_purchases"] == duckdb_clv["repeat_purchases"]).all()
    spark_check, duckdb_check = spark_run.clv["holdout"], duckdb_run.clv["holdout"]
    for figure in ("customers", "mean_absolute_error", "predicted_total", "actual_total"):
        assert spark_check[figure] == duckdb_check[figure], figure
    assert spark_check["by_repeat_purchases"] == duckdb_check["by_repeat_purchases"]

    # Past the driver's budget the models learn from a sample of customers, all their
    # cutoffs together, and still score every customer on the executors.
    examples = sampled.driver_samples["training_examples"]
    assert 0 < examples["rows"] <= 500 < examples["rows_at_most"]
    assert examples["rows"] < data.driver_samples["training_examples"]["rows"]
    assert sampled.driver_samples["holdout"]["rows"] <= 500
    assert sampled_run.candidate_metrics["rows"] <= 500
    assert sampled_scores.index.equals(duckdb_scores.index)
