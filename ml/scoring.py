"""One scoring run over the warehouse: train a churn candidate on past cutoffs, judge it on
a time-based holdout against the live model, score every buyer with the live one, fit
lifetime value, and write `ml.churn_scores`, `ml.customer_clv` and `ml.model_runs`.

The time line, for an as-of day `T` and a churn window `W`:

    ... train cutoffs ≤ T-2W | labels up to T-W | holdout cutoff T-W | labels up to T | score at T

No training label reaches into the holdout window, and the holdout labels are the newest
complete ones, so the holdout figures are what the model will do on the next window.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

import duckdb
import numpy as np
import pandas as pd

from ml.churn import (
    DEFAULT_BAND_THRESHOLDS,
    ChurnModel,
    evaluate_churn,
    explain,
    fit_churn,
    holdout_metrics,
    risk_band,
)
from ml.clv import ClvFit, clv_holdout, fit_clv, predict_clv
from ml.features import FEATURE_NAMES, churn_features, churn_labels
from ml.registry import DEFAULT_TOLERANCE, ModelRegistry, should_promote


class NotEnoughHistory(ValueError):
    """The order history is too short for a training cutoff, a holdout and its labels."""


@dataclass(frozen=True)
class ScoringConfig:
    """`churn_window_days`: a customer has churned at a cutoff when they buy nothing in this
    many days after it. Training stacks up to `training_cutoffs` cutoffs `cutoff_step_days`
    apart, each with at least `min_history_days` of orders before it.

    `refit_every_days`: the churn model is retrained and lifetime value refitted once the
    live ones were fitted on data this many days older than the as-of day (or when there
    are none, or they answer another window or horizon). In between, a run scores with the
    live ones: customers' figures move daily, the patterns the models learn do not. 0 refits
    on every run."""

    churn_window_days: int = 30
    training_cutoffs: int = 12
    cutoff_step_days: int = 7
    min_history_days: int = 28
    clv_horizon_days: int = 365
    band_thresholds: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_BAND_THRESHOLDS))
    promotion_tolerance: float = DEFAULT_TOLERANCE
    refit_every_days: int = 7
    as_of: date | None = None


@dataclass(frozen=True)
class Timeline:
    as_of: date
    holdout_cutoff: date
    training_cutoffs: list[date]


def plan_timeline(first_day: date, as_of: date, config: ScoringConfig) -> Timeline:
    window = timedelta(days=config.churn_window_days)
    holdout = as_of - window
    latest_training = holdout - window
    earliest = first_day + timedelta(days=config.min_history_days)
    cutoffs = [
        latest_training - timedelta(days=config.cutoff_step_days * k)
        for k in range(config.training_cutoffs)
    ]
    cutoffs = sorted(c for c in cutoffs if c >= earliest)
    if not cutoffs:
        needed = 2 * config.churn_window_days + config.min_history_days
        raise NotEnoughHistory(
            f"churn scoring needs {needed} days of orders (a {config.churn_window_days}-day "
            f"window twice plus {config.min_history_days} days of history); the warehouse "
            f"has {(as_of - first_day).days + 1}, from {first_day} to {as_of}"
        )
    return Timeline(as_of=as_of, holdout_cutoff=holdout, training_cutoffs=cutoffs)


@dataclass
class ScoringRun:
    run_at: datetime
    timeline: Timeline
    churn_version: str
    candidate_version: str
    promoted: bool
    promotion_reason: str
    candidate_metrics: dict[str, Any]
    live_metrics: dict[str, Any] | None
    clv_version: str
    clv: dict[str, Any]
    scored_customers: int
    risk_bands: dict[str, int]
    valued_customers: int = 0
    churn_refitted: bool = True
    clv_refitted: bool = True
    seconds: dict[str, float] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        return {
            "run_at": self.run_at.isoformat(timespec="seconds"),
            "as_of": str(self.timeline.as_of),
            "holdout_cutoff": str(self.timeline.holdout_cutoff),
            "training_cutoffs": [str(c) for c in self.timeline.training_cutoffs],
            "churn_live_version": self.churn_version,
            "churn_candidate_version": self.candidate_version,
            "promoted": self.promoted,
            "promotion_reason": self.promotion_reason,
            "churn_refitted": self.churn_refitted,
            "clv_refitted": self.clv_refitted,
            "churn_holdout": self.candidate_metrics,
            "live_model_on_holdout": self.live_metrics,
            "clv_version": self.clv_version,
            "clv": self.clv,
            "scored_customers": self.scored_customers,
            "valued_customers": self.valued_customers,
            "risk_bands": self.risk_bands,
            "seconds": self.seconds,
        }


def training_examples(
    conn: duckdb.DuckDBPyConnection, cutoffs: list[date], window_days: int
) -> pd.DataFrame:
    """Features and labels at every cutoff, stacked; `cutoff` says which."""
    frames = []
    for cutoff in cutoffs:
        frame = churn_features(conn, cutoff).merge(
            churn_labels(conn, cutoff, window_days), on="customer_id"
        )
        frame["cutoff"] = pd.Timestamp(cutoff)
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


def _order_days(conn: duckdb.DuckDBPyConnection) -> tuple[date, date]:
    first, last = conn.execute(
        "select min(ordered_on), max(ordered_on) from intermediate.int_sales__customer_orders"
        " where not is_reversed"
    ).fetchall()[0]
    if first is None:
        raise NotEnoughHistory("the warehouse holds no orders yet")
    return first, last


def _transactions(conn: duckdb.DuckDBPyConnection, as_of: date) -> pd.DataFrame:
    return conn.execute(
        """
        select customer_id, ordered_on as date, cast(order_amount as double) as amount
        from intermediate.int_sales__customer_orders
        where not is_reversed and ordered_on <= ?
        """,
        [as_of],
    ).df()


@dataclass(frozen=True)
class Registration:
    """What became of a candidate: its version, the model and version that score now, and
    the promotion decision with the live model's figures on the same holdout, and the
    candidate's holdout probabilities (for the report, so they are predicted once)."""

    candidate_version: str
    scoring_model: ChurnModel
    scoring_version: str
    promoted: bool
    reason: str
    candidate_metrics: dict[str, Any]
    live_metrics: dict[str, Any] | None
    candidate_probability: np.ndarray


def register_candidate(
    registry: ModelRegistry,
    candidate: ChurnModel,
    holdout: pd.DataFrame,
    *,
    tolerance: float = DEFAULT_TOLERANCE,
    details: dict[str, Any] | None = None,
) -> Registration:
    """Evaluate `candidate` and the live model on the same `holdout` (features and
    `churned`), store the candidate as a new version, and make it live only if it is not
    worse (`should_promote`). A live model of other features or another window answers
    another question, so the candidate replaces it."""
    candidate_probability = candidate.predict(holdout)
    candidate_metrics = holdout_metrics(holdout["churned"], candidate_probability)
    live_version = registry.live_version()
    live: ChurnModel | None = registry.load(live_version) if live_version else None
    live_metrics = None
    if live is None:
        promoted, reason = True, "no live model yet"
    elif live.feature_names != candidate.feature_names or live.window_days != candidate.window_days:
        promoted, reason = True, "the live model uses other features or another window"
    else:
        live_metrics = evaluate_churn(live, holdout, holdout["churned"])
        decision = should_promote(candidate_metrics, live_metrics, tolerance)
        promoted, reason = decision.promoted, decision.reason
    version = registry.save(
        candidate,
        {
            **candidate_metrics,
            **(details or {}),
            "training_rows": candidate.training_rows,
            "window_days": candidate.window_days,
            "promoted": promoted,
            "promotion_reason": reason,
            "compared_with": live_version,
            "live_metrics": live_metrics,
        },
    )
    if promoted:
        registry.promote(version, reason)
        return Registration(
            version,
            candidate,
            version,
            True,
            reason,
            candidate_metrics,
            live_metrics,
            candidate_probability,
        )
    assert live is not None and live_version is not None
    return Registration(
        version,
        live,
        live_version,
        False,
        reason,
        candidate_metrics,
        live_metrics,
        candidate_probability,
    )


def _fitted_days_ago(fitted_through: date, as_of: date, refit_every_days: int) -> int | None:
    """How many days of data a fit is behind `as_of`, if it is still recent enough to use."""
    age = (as_of - fitted_through).days
    return age if 0 <= age < refit_every_days else None


def _live_churn_if_recent(
    registry: ModelRegistry, as_of: date, window_days: int, refit_every_days: int
) -> tuple[str, ChurnModel, int] | None:
    """The live churn model (version, model, age in days) if it can score `as_of` without a
    refit: fitted less than `refit_every_days` before it, for the same features and window."""
    version = registry.live_version()
    if version is None:
        return None
    details = registry.metrics(version)
    if "holdout_cutoff" not in details:
        return None
    # Trained at as-of T, the holdout cutoff was T minus the window.
    fitted_through = date.fromisoformat(details["holdout_cutoff"]) + timedelta(
        days=int(details.get("window_days", window_days))
    )
    age = _fitted_days_ago(fitted_through, as_of, refit_every_days)
    if age is None:
        return None
    model: ChurnModel = registry.load(version)
    if model.feature_names != list(FEATURE_NAMES) or model.window_days != window_days:
        return None
    return version, model, age


def _kept_registration(
    version: str, model: ChurnModel, age_days: int, holdout: pd.DataFrame, refit_every_days: int
) -> Registration:
    """The live model kept without a refit, with its figures on today's holdout: the same
    check a candidate gets, so a model that has gone stale shows it between refits."""
    probability = model.predict(holdout)
    return Registration(
        candidate_version=version,
        scoring_model=model,
        scoring_version=version,
        promoted=False,
        reason=f"not refitted: the live model was fitted {age_days} days of data ago, "
        f"models are refitted every {refit_every_days}",
        candidate_metrics=holdout_metrics(holdout["churned"], probability),
        live_metrics=None,
        candidate_probability=probability,
    )


def _live_clv_if_recent(
    registry: ModelRegistry, as_of: date, horizon_days: int, refit_every_days: int
) -> tuple[str, dict[str, Any]] | None:
    """The live lifetime-value fit (version, its parameters and holdout) if it can predict
    for `as_of` without a refit."""
    version = registry.live_version()
    if version is None:
        return None
    fitted: dict[str, Any] = registry.metrics(version)
    if fitted.get("horizon_days") != horizon_days or "observation_end" not in fitted:
        return None
    age = _fitted_days_ago(date.fromisoformat(fitted["observation_end"]), as_of, refit_every_days)
    return None if age is None else (version, fitted)


@contextmanager
def memory_limit(conn: duckdb.DuckDBPyConnection, limit: str | None) -> Iterator[None]:
    """Run a block under DuckDB memory limit `limit` (e.g. "3GB"), then restore the one before.

    The limit belongs to the database, not the connection: restoring it matters, because
    the next steps of a run share the database in the same process. `None` keeps the limit.
    The limit restored is the one DuckDB reports, rounded to 0.1 of its unit (MiB, GiB).
    """
    if limit is None:
        yield
        return
    before = conn.execute("select current_setting('memory_limit')").fetchone()[0]  # type: ignore[index]
    conn.execute("set memory_limit = ?", [limit])
    try:
        yield
    finally:
        conn.execute("set memory_limit = ?", [before])


@dataclass(frozen=True)
class ScoredRows:
    """Per-customer rows a scoring run wrote: a frame, or the Parquet an engine elsewhere
    wrote (a `pyarrow.dataset.Dataset`); either goes into DuckDB with `write_scores`."""

    rows: Any
    count: int
    risk_bands: dict[str, int] = field(default_factory=dict)


class ScoringData(Protocol):
    """Where a scoring run reads the warehouse and where its per-customer work runs: in
    this process on DuckDB (`DuckDBScoringData`), or on Spark's executors
    (`ml.spark_scoring.SparkScoringData`). What a model is fitted or judged on is a frame
    here; the rows of every customer stay with the engine."""

    def order_days(self) -> tuple[date, date]: ...

    def training_examples(self, cutoffs: list[date], window_days: int) -> pd.DataFrame: ...

    def holdout(self, cutoff: date, window_days: int) -> pd.DataFrame: ...

    def churn_scores(
        self, model: ChurnModel, as_of: date, version: str, config: ScoringConfig
    ) -> ScoredRows: ...

    def clv_parameters(
        self, as_of: date, horizon_days: int
    ) -> tuple[dict[str, float], dict[str, float]]: ...

    def clv_holdout(self, calibration_end: date, holdout_end: date) -> dict[str, Any]: ...

    def customer_clv(
        self,
        as_of: date,
        bg_nbd: dict[str, float],
        gamma_gamma: dict[str, float],
        horizon_days: int,
        version: str,
    ) -> ScoredRows: ...


def churn_score_rows(
    model: ChurnModel, features: pd.DataFrame, as_of: date, version: str, config: ScoringConfig
) -> pd.DataFrame:
    """The `ml.churn_scores` rows of the customers in `features` (any slice of them)."""
    probability = model.predict(features)
    reasons = explain(model, features)
    return pd.DataFrame(
        {
            "customer_id": features["customer_id"].to_numpy(),
            "as_of_date": pd.Timestamp(as_of),
            "churn_probability": np.round(probability, 4),
            "churn_risk_band": risk_band(probability, config.band_thresholds),
            "churn_reason_codes": reasons["reason_codes"].to_numpy(),
            "churn_reasons_zh": reasons["reasons_zh"].to_numpy(),
            "churn_reasons_en": reasons["reasons_en"].to_numpy(),
            "churn_window_days": config.churn_window_days,
            "model_version": version,
        }
    )


def clv_rows(
    predictions: pd.DataFrame, as_of: date, horizon_days: int, version: str
) -> pd.DataFrame:
    """The `ml.customer_clv` rows of a `ClvFit`'s predictions (any slice of them)."""
    return pd.DataFrame(
        {
            "customer_id": predictions["customer_id"].to_numpy(),
            "as_of_date": pd.Timestamp(as_of),
            "repeat_purchases": predictions["frequency"].astype("int64").to_numpy(),
            "probability_alive": np.round(predictions["probability_alive"].to_numpy(), 4),
            "expected_purchases": np.round(predictions["expected_purchases"].to_numpy(), 4),
            "expected_average_value": np.round(predictions["expected_average_value"].to_numpy(), 2),
            "predicted_clv": np.round(predictions["expected_value"].to_numpy(), 2),
            "horizon_days": horizon_days,
            "model_version": version,
        }
    )


def _band_counts(bands: pd.Series) -> dict[str, int]:
    counts = bands.value_counts()
    return {band: int(counts.get(band, 0)) for band in ("low", "medium", "high")}


class DuckDBScoringData:
    """A scoring run on the DuckDB warehouse, in this process."""

    def __init__(self, conn: duckdb.DuckDBPyConnection) -> None:
        self.conn = conn
        self._fits: dict[tuple[date, int], ClvFit] = {}

    def order_days(self) -> tuple[date, date]:
        return _order_days(self.conn)

    def training_examples(self, cutoffs: list[date], window_days: int) -> pd.DataFrame:
        return training_examples(self.conn, cutoffs, window_days)

    def holdout(self, cutoff: date, window_days: int) -> pd.DataFrame:
        return churn_features(self.conn, cutoff).merge(
            churn_labels(self.conn, cutoff, window_days), on="customer_id"
        )

    def churn_scores(
        self, model: ChurnModel, as_of: date, version: str, config: ScoringConfig
    ) -> ScoredRows:
        rows = churn_score_rows(model, churn_features(self.conn, as_of), as_of, version, config)
        return ScoredRows(rows, len(rows), _band_counts(rows["churn_risk_band"]))

    def clv_parameters(
        self, as_of: date, horizon_days: int
    ) -> tuple[dict[str, float], dict[str, float]]:
        fit = fit_clv(_transactions(self.conn, as_of), as_of, horizon_days=horizon_days)
        # Its predictions are the ones `customer_clv` asks for next: kept, not redone.
        self._fits[(as_of, horizon_days)] = fit
        return fit.bg_nbd, fit.gamma_gamma

    def clv_holdout(self, calibration_end: date, holdout_end: date) -> dict[str, Any]:
        return clv_holdout(_transactions(self.conn, holdout_end), calibration_end, holdout_end)

    def customer_clv(
        self,
        as_of: date,
        bg_nbd: dict[str, float],
        gamma_gamma: dict[str, float],
        horizon_days: int,
        version: str,
    ) -> ScoredRows:
        fit = self._fits.pop((as_of, horizon_days), None)
        if fit is None or (fit.bg_nbd, fit.gamma_gamma) != (bg_nbd, gamma_gamma):
            transactions = _transactions(self.conn, as_of)
            fit = predict_clv(transactions, as_of, bg_nbd, gamma_gamma, horizon_days=horizon_days)
        rows = clv_rows(fit.predictions, as_of, horizon_days, version)
        return ScoredRows(rows, len(rows))


def score(
    conn: duckdb.DuckDBPyConnection,
    models_dir: Path,
    config: ScoringConfig | None = None,
) -> tuple[ScoringRun, dict[str, Any]]:
    """Train, judge, promote and score on the DuckDB warehouse of `conn`. Returns the run
    and what the tables hold (`churn_scores`, `customer_clv`, `holdout`); `write_scores`
    stores them."""
    return score_from(DuckDBScoringData(conn), models_dir, config)


def score_from(
    data: ScoringData,
    models_dir: Path,
    config: ScoringConfig | None = None,
) -> tuple[ScoringRun, dict[str, Any]]:
    """`score` on any `ScoringData`: the same timeline, models, promotion and refit rules
    whichever engine reads the warehouse and scores the customers."""
    config = config or ScoringConfig()
    run_at = datetime.now(UTC).replace(tzinfo=None)
    seconds: dict[str, float] = {}
    clock = time.perf_counter()

    def lap(stage: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        seconds[stage] = round(now - clock, 2)
        clock = now

    first_day, last_day = data.order_days()
    timeline = plan_timeline(first_day, config.as_of or last_day, config)
    window = config.churn_window_days

    churn_registry = ModelRegistry(models_dir / "churn")
    holdout = data.holdout(timeline.holdout_cutoff, window)
    kept = _live_churn_if_recent(churn_registry, timeline.as_of, window, config.refit_every_days)
    if kept is not None:
        registration = _kept_registration(*kept, holdout, config.refit_every_days)
        lap("churn_holdout_of_live_model")
    else:
        examples = data.training_examples(timeline.training_cutoffs, window)
        lap("training_features")
        candidate = fit_churn(examples, window_days=window)
        lap("churn_training")
        registration = register_candidate(
            churn_registry,
            candidate,
            holdout,
            tolerance=config.promotion_tolerance,
            details={
                "trained_at": run_at.isoformat(timespec="seconds"),
                "training_cutoffs": [str(c) for c in timeline.training_cutoffs],
                "holdout_cutoff": str(timeline.holdout_cutoff),
            },
        )
        lap("churn_holdout_and_promotion")
    churn_scores = data.churn_scores(
        registration.scoring_model, timeline.as_of, registration.scoring_version, config
    )
    lap("churn_scoring")

    clv_registry = ModelRegistry(models_dir / "clv")
    live_clv = _live_clv_if_recent(
        clv_registry, timeline.as_of, config.clv_horizon_days, config.refit_every_days
    )
    if live_clv is not None:
        clv_version, fitted = live_clv
        bg_nbd, gamma_gamma = fitted["bg_nbd"], fitted["gamma_gamma"]
        # The figures of the fit in use, with the day it scored through.
        clv_summary = {**fitted, "scored_through": str(timeline.as_of)}
    else:
        bg_nbd, gamma_gamma = data.clv_parameters(timeline.as_of, config.clv_horizon_days)
        clv_check = data.clv_holdout(timeline.holdout_cutoff, timeline.as_of)
        lap("clv_fit_and_holdout")
        clv_summary = {
            "bg_nbd": bg_nbd,
            "gamma_gamma": gamma_gamma,
            "horizon_days": config.clv_horizon_days,
            "observation_end": str(timeline.as_of),
            "holdout": clv_check,
        }
        # Each fit is a version, with its holdout check, for comparison over time.
        clv_version = clv_registry.save(clv_summary, clv_summary)
        clv_registry.promote(clv_version, "refitted on the newest history")
    customer_clv = data.customer_clv(
        timeline.as_of, bg_nbd, gamma_gamma, config.clv_horizon_days, clv_version
    )
    lap("clv_prediction")

    run = ScoringRun(
        run_at=run_at,
        timeline=timeline,
        churn_version=registration.scoring_version,
        candidate_version=registration.candidate_version,
        promoted=registration.promoted,
        promotion_reason=registration.reason,
        candidate_metrics=registration.candidate_metrics,
        live_metrics=registration.live_metrics,
        clv_version=clv_version,
        clv=clv_summary,
        scored_customers=churn_scores.count,
        valued_customers=customer_clv.count,
        risk_bands=churn_scores.risk_bands,
        churn_refitted=kept is None,
        clv_refitted=live_clv is None,
        seconds=seconds,
    )
    holdout_scored = holdout[["customer_id", "churned"]].assign(
        churn_probability=registration.candidate_probability
    )
    return run, {
        "churn_scores": churn_scores.rows,
        "customer_clv": customer_clv.rows,
        "holdout": holdout_scored,
    }


# Explicit types: the tables are sources of dbt models with enforced contracts.
_TABLES_DDL = {
    "churn_scores": """
        create table if not exists ml.churn_scores (
            customer_id varchar,
            as_of_date date,
            churn_probability double,
            churn_risk_band varchar,
            churn_reason_codes varchar,
            churn_reasons_zh varchar,
            churn_reasons_en varchar,
            churn_window_days integer,
            model_version varchar
        )""",
    "customer_clv": """
        create table if not exists ml.customer_clv (
            customer_id varchar,
            as_of_date date,
            repeat_purchases integer,
            probability_alive double,
            expected_purchases double,
            expected_average_value double,
            predicted_clv double,
            horizon_days integer,
            model_version varchar
        )""",
    "model_runs": """
        create table if not exists ml.model_runs (
            run_at timestamp,
            as_of_date date,
            model_kind varchar,
            version varchar,
            live_version varchar,
            promoted boolean,
            reason varchar,
            metrics json
        )""",
}


def ensure_tables(conn: duckdb.DuckDBPyConnection) -> None:
    """The `ml` tables, empty until the first scoring run fills them."""
    conn.execute("create schema if not exists ml")
    for ddl in _TABLES_DDL.values():
        conn.execute(ddl)


def write_scores(conn: duckdb.DuckDBPyConnection, run: ScoringRun, frames: dict[str, Any]) -> None:
    """Replace the rows of `ml.churn_scores` and `ml.customer_clv` in one transaction and
    append the run's two rows to `ml.model_runs`."""
    ensure_tables(conn)
    conn.execute("begin transaction")
    try:
        for table in ("churn_scores", "customer_clv"):
            conn.register(f"{table}_frame", frames[table])
            conn.execute(f"delete from ml.{table}")
            conn.execute(f"insert into ml.{table} by name select * from {table}_frame")
            conn.unregister(f"{table}_frame")
        rows = [
            (
                run.run_at,
                run.timeline.as_of,
                "churn",
                run.candidate_version,
                run.churn_version,
                run.promoted,
                run.promotion_reason,
                json.dumps(
                    {"candidate": run.candidate_metrics, "live": run.live_metrics},
                    ensure_ascii=False,
                ),
            ),
            (
                run.run_at,
                run.timeline.as_of,
                "clv",
                run.clv_version,
                run.clv_version,
                run.clv_refitted,
                "refitted on the newest history"
                if run.clv_refitted
                else "not refitted: the live fit is recent enough",
                json.dumps(run.clv, ensure_ascii=False),
            ),
        ]
        conn.executemany("insert into ml.model_runs values (?, ?, ?, ?, ?, ?, ?, ?)", rows)
        conn.execute("commit")
    except duckdb.Error:
        conn.execute("rollback")
        raise
