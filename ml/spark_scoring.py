"""Scoring on Spark (`CRM_SCORING_ENGINE=spark`, the default with `CRM_TARGET=spark`): the
features, models, promotion rules and tables of `ml.scoring`, with every customer's rows on
Spark's executors.

- The features, labels and purchase summary are `ml.features`' and `ml.clv`'s own queries,
  carried to Spark's SQL by sqlglot, over the Parquet tables dbt built on Spark.
- Churn scores and lifetime values are computed batch by batch on the executors
  (`mapInPandas`, the fitted model shipped with the function) and written as Parquet, which
  DuckDB reads into the `ml` tables: no customer's row passes through the driver.
- What the driver fits or judges on is bounded by `driver_rows`: the training examples and
  the holdout (past it, a fixed sample of customers, the same ones on every run, all their
  cutoffs together), and the repeat buyers Gamma–Gamma is fitted on. BG/NBD is fitted on the
  distinct (frequency, recency, T) histories with their counts, which stay in the tens of
  thousands at any number of customers, so its parameters are exactly DuckDB's.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
import pyarrow.dataset as ds

from ml.churn import ChurnModel
from ml.clv import (
    fit_bg_nbd_on_histories,
    fit_gamma_gamma,
    holdout_report,
    predictions_from_summary,
    purchase_summary_query,
    repeat_purchase_bucket,
)
from ml.features import FEATURE_NAMES, churn_features_query, churn_labels_query
from ml.scoring import NotEnoughHistory, ScoredRows, ScoringConfig, churn_score_rows, clv_rows

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

# Two million rows of fifteen floats are about 250 MB on the driver: a training set that
# fits a 2 GB driver beside the model, and far more than the trees need to learn from.
DEFAULT_DRIVER_ROWS = 2_000_000
# A customer is in the driver's sample when the hash of their id, modulo this, is below
# the share times this: fine enough for any share, and the same customers on every run.
_SAMPLE_BUCKETS = 1_000_000
_SAMPLE_MARGIN = 0.9

_CHURN_SCORES_SCHEMA = (
    "customer_id string, as_of_date date, churn_probability double, churn_risk_band string, "
    "churn_reason_codes string, churn_reasons_zh string, churn_reasons_en string, "
    "churn_window_days int, model_version string"
)
_CUSTOMER_CLV_SCHEMA = (
    "customer_id string, as_of_date date, repeat_purchases int, probability_alive double, "
    "expected_purchases double, expected_average_value double, predicted_clv double, "
    "horizon_days int, model_version string"
)
_HOLDOUT_SCHEMA = "bucket string, predicted double, frequency_holdout double"
_SUMMARY_COLUMNS = ["frequency", "recency", "T", "monetary_value"]


def register_tables(spark: SparkSession, tables: Mapping[tuple[str, str], Path]) -> None:
    """Each `(schema, table)` as a table of this session's catalog over its Parquet folder,
    so the queries name them as they do on DuckDB (`intermediate.int_sales__…`)."""
    for (schema, table), folder in tables.items():
        spark.sql(f"create database if not exists {schema}")
        spark.sql(f"drop table if exists {schema}.{table}")
        spark.catalog.createTable(f"{schema}.{table}", path=str(folder), source="parquet")


class SparkScoringData:
    """`ml.scoring.ScoringData` on a Spark session whose catalog holds the scoring tables
    (`register_tables`); what it scores goes to Parquet folders under `out_dir`."""

    def __init__(
        self, spark: SparkSession, out_dir: Path, driver_rows: int = DEFAULT_DRIVER_ROWS
    ) -> None:
        self.spark = spark
        self.out_dir = out_dir
        self.driver_rows = driver_rows
        # How many rows each frame sent to the driver held, and of how many.
        self.driver_samples: dict[str, dict[str, int]] = {}
        self._kept_summary: tuple[date, DataFrame] | None = None
        spark.conf.set("spark.sql.execution.arrow.pyspark.enabled", "true")
        spark.sql(
            "select customer_id, ordered_on as date, cast(order_amount as double) as amount"
            " from intermediate.int_sales__customer_orders where not is_reversed"
        ).createOrReplaceTempView("transactions")

    # -- churn -------------------------------------------------------------------------

    def order_days(self) -> tuple[date, date]:
        first, last = self.spark.sql("select min(date), max(date) from transactions").first()  # type: ignore[misc]
        if first is None:
            raise NotEnoughHistory("the warehouse holds no orders yet")
        return first, last

    def _labelled(self, cutoff: date, window_days: int) -> DataFrame:
        features = self.spark.sql(churn_features_query("spark", cutoff))
        labels = self.spark.sql(churn_labels_query("spark", cutoff, window_days))
        return features.join(labels, "customer_id")

    def _buyers(self, cutoff: date) -> int:
        return int(
            self.spark.sql(
                f"select count(distinct customer_id) from transactions where date <= '{cutoff}'"
            ).first()[0]  # type: ignore[index]
        )

    def _to_driver(self, name: str, frame: DataFrame, rows_at_most: int) -> pd.DataFrame:
        """`frame` on the driver, at most `driver_rows` of its rows: past that (by
        `rows_at_most`, an upper bound that costs no pass over it), the rows of a sample of
        customers a little under the budget, so the cut that enforces it rarely bites."""
        from pyspark.sql import functions as F

        if rows_at_most > self.driver_rows:
            share = _SAMPLE_MARGIN * self.driver_rows / rows_at_most
            frame = frame.where(
                F.pmod(F.xxhash64("customer_id"), F.lit(_SAMPLE_BUCKETS))
                < F.lit(int(_SAMPLE_BUCKETS * share))
            ).limit(self.driver_rows)
        result = frame.toPandas()
        self.driver_samples[name] = {"rows": len(result), "rows_at_most": rows_at_most}
        return result

    def training_examples(self, cutoffs: list[date], window_days: int) -> pd.DataFrame:
        from pyspark.sql import functions as F

        stacked = None
        for cutoff in cutoffs:
            labelled = self._labelled(cutoff, window_days).withColumn("cutoff", F.lit(cutoff))
            stacked = labelled if stacked is None else stacked.unionByName(labelled)
        assert stacked is not None
        # Buyers only grow with the cutoff: the latest one's, once per cutoff, bound the rows.
        rows_at_most = self._buyers(max(cutoffs)) * len(cutoffs)
        # Ordered as DuckDB's, so the same examples train the same model.
        examples = self._to_driver(
            "training_examples", stacked.orderBy("cutoff", "customer_id"), rows_at_most
        )
        examples["cutoff"] = pd.to_datetime(examples["cutoff"])
        return _typed(examples)

    def holdout(self, cutoff: date, window_days: int) -> pd.DataFrame:
        labelled = self._labelled(cutoff, window_days).orderBy("customer_id")
        return _typed(self._to_driver("holdout", labelled, self._buyers(cutoff)))

    def churn_scores(
        self, model: ChurnModel, as_of: date, version: str, config: ScoringConfig
    ) -> ScoredRows:
        def scored(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
            for batch in batches:
                rows = churn_score_rows(model, _typed(batch), as_of, version, config)
                yield rows.assign(as_of_date=as_of)

        features = self.spark.sql(churn_features_query("spark", as_of))
        path = self._write("churn_scores", features.mapInPandas(scored, _CHURN_SCORES_SCHEMA))
        bands = {
            row["churn_risk_band"]: int(row["count"])
            for row in self.spark.read.parquet(str(path))
            .groupBy("churn_risk_band")
            .count()
            .collect()
        }
        return ScoredRows(
            ds.dataset(path, format="parquet"),
            sum(bands.values()),
            {band: bands.get(band, 0) for band in ("low", "medium", "high")},
        )

    # -- lifetime value ----------------------------------------------------------------

    def _summary(self, observation_end: date) -> DataFrame:
        return self.spark.sql(purchase_summary_query("spark", observation_end))

    def _bg_nbd(self, summary: DataFrame) -> dict[str, float]:
        histories = (
            summary.groupBy("frequency", "recency", "T")
            .count()
            .withColumnRenamed("count", "customers")
            .orderBy("frequency", "recency", "T")
            .toPandas()
        )
        self.driver_samples["bg_nbd_histories"] = {
            "rows": len(histories),
            "rows_at_most": len(histories),
        }
        fitted = fit_bg_nbd_on_histories(histories)
        return {k: float(v) for k, v in fitted.params_.items()}

    def clv_parameters(
        self, as_of: date, horizon_days: int
    ) -> tuple[dict[str, float], dict[str, float]]:
        summary = self._summary(as_of).cache()
        # `customer_clv` predicts from the same summary next: kept, not computed again.
        self._kept_summary = (as_of, summary)
        bg_nbd = self._bg_nbd(summary)
        repeaters = summary.where("frequency > 0 and monetary_value > 0")
        repeaters = self._to_driver(
            "gamma_gamma_repeaters",
            repeaters.select("customer_id", "frequency", "monetary_value").orderBy("customer_id"),
            repeaters.count(),
        )
        gamma_gamma: dict[str, float] = {}
        if len(repeaters) >= 2:
            fitter = fit_gamma_gamma(repeaters["frequency"], repeaters["monetary_value"], 0.001)
            gamma_gamma = {k: float(v) for k, v in fitter.params_.items()}
        return bg_nbd, gamma_gamma

    def clv_holdout(self, calibration_end: date, holdout_end: date) -> dict[str, Any]:
        from pyspark.sql import functions as F

        later = self.spark.sql(
            "select customer_id, cast(count(distinct date) as double) as frequency_holdout"
            f" from transactions where date > '{calibration_end}' and date <= '{holdout_end}'"
            " group by customer_id"
        )
        summary = (
            self._summary(calibration_end)
            .join(later, "customer_id", "left")
            .fillna(0.0, ["frequency_holdout"])
            .cache()
        )
        try:
            bg_nbd = self._bg_nbd(summary)
            duration = float((holdout_end - calibration_end).days)

            def predicted(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
                from lifetimes import BetaGeoFitter

                fitter = BetaGeoFitter()
                fitter.params_ = pd.Series(bg_nbd)
                for batch in batches:
                    expected = fitter.conditional_expected_number_of_purchases_up_to_time(
                        duration, batch["frequency"], batch["recency"], batch["T"]
                    )
                    yield pd.DataFrame(
                        {
                            "bucket": repeat_purchase_bucket(batch["frequency"].to_numpy()),
                            "predicted": pd.Series(expected).to_numpy(dtype="float64"),
                            "frequency_holdout": batch["frequency_holdout"].to_numpy(),
                        }
                    )

            compared = summary.mapInPandas(predicted, _HOLDOUT_SCHEMA).cache()
            totals = compared.agg(
                F.count("*").alias("customers"),
                F.sum(F.abs(F.col("predicted") - F.col("frequency_holdout"))).alias("error"),
                F.sum("predicted").alias("predicted"),
                F.sum("frequency_holdout").alias("actual"),
            ).first()
            buckets = (
                compared.groupBy("bucket")
                .agg(
                    F.count("*").alias("customers"),
                    F.avg("predicted").alias("predicted"),
                    F.avg("frequency_holdout").alias("actual"),
                )
                .toPandas()
            )
            compared.unpersist()
        finally:
            summary.unpersist()
        assert totals is not None
        return holdout_report(
            calibration_end,
            duration,
            bg_nbd,
            customers=int(totals["customers"]),
            absolute_error_sum=float(totals["error"]),
            predicted_total=float(totals["predicted"]),
            actual_total=float(totals["actual"]),
            buckets=buckets,
        )

    def customer_clv(
        self,
        as_of: date,
        bg_nbd: dict[str, float],
        gamma_gamma: dict[str, float],
        horizon_days: int,
        version: str,
    ) -> ScoredRows:
        kept, self._kept_summary = self._kept_summary, None
        if kept is not None and kept[0] == as_of:
            summary = kept[1]
        else:
            if kept is not None:
                kept[1].unpersist()
            summary = self._summary(as_of).cache()
        try:
            return self._predicted_clv(summary, as_of, bg_nbd, gamma_gamma, horizon_days, version)
        finally:
            summary.unpersist()

    def _predicted_clv(
        self,
        summary: DataFrame,
        as_of: date,
        bg_nbd: dict[str, float],
        gamma_gamma: dict[str, float],
        horizon_days: int,
        version: str,
    ) -> ScoredRows:
        from pyspark.sql import functions as F

        occasions = summary.agg(
            F.sum("occasions_amount").alias("amount"), F.sum("occasions").alias("count")
        ).first()
        assert occasions is not None
        occasion_mean = (
            float(occasions["amount"]) / occasions["count"] if occasions["count"] else float("nan")
        )

        def predicted(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
            for batch in batches:
                fit = predictions_from_summary(
                    batch.set_index("customer_id")[_SUMMARY_COLUMNS],
                    occasion_mean,
                    bg_nbd,
                    gamma_gamma,
                    as_of,
                    horizon_days,
                    0.0,
                )
                yield clv_rows(fit.predictions, as_of, horizon_days, version).assign(
                    as_of_date=as_of
                )

        path = self._write(
            "customer_clv",
            summary.select("customer_id", *_SUMMARY_COLUMNS).mapInPandas(
                predicted, _CUSTOMER_CLV_SCHEMA
            ),
        )
        return ScoredRows(
            ds.dataset(path, format="parquet"), self.spark.read.parquet(str(path)).count()
        )

    def _write(self, name: str, frame: DataFrame) -> Path:
        path = self.out_dir / name
        frame.write.mode("overwrite").parquet(str(path))
        return path


def _typed(frame: pd.DataFrame) -> pd.DataFrame:
    """Features as DuckDB's frames hold them: floats, NaN where SQL said null."""
    return frame.astype({name: "float64" for name in FEATURE_NAMES})
