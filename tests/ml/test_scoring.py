"""Churn scores, lifetime value and next actions on a real pipeline run: no leakage from
after a cutoff, planted churners ranked high, reasons that quote the customer's own figures,
value tiers on predicted lifetime value, and a worse model never promoted."""

from __future__ import annotations

import json
from datetime import date, timedelta
from pathlib import Path

import dagster as dg
import duckdb
import numpy as np
import pandas as pd
import pytest
from lightgbm import LGBMClassifier

from crm_warehouse.alert_quality import planted_churn_auc
from crm_warehouse.settings import Settings
from ml.churn import fit_churn, tree_contributions
from ml.features import FEATURES, churn_features, churn_labels
from ml.registry import ModelRegistry
from ml.scoring import (
    ScoringConfig,
    ScoringRun,
    plan_timeline,
    register_candidate,
    score,
    training_examples,
)
from orchestration.run import dagster_instance

pytestmark = pytest.mark.slow


def _read(settings: Settings) -> duckdb.DuckDBPyConnection:
    return duckdb.connect(str(settings.warehouse_path), read_only=True)


def _as_of(conn: duckdb.DuckDBPyConnection) -> date:
    return conn.execute("select max(as_of_date) from ml.churn_scores").fetchall()[0][0]


def test_features_at_a_cutoff_ignore_everything_after_it(own_copy: Settings) -> None:
    with duckdb.connect(str(own_copy.warehouse_path)) as conn:
        cutoff = _as_of(conn) - timedelta(days=40)
        before = churn_features(conn, cutoff)
        customer = before.sort_values("lifetime_orders").iloc[-1]["customer_id"]
        complaint = conn.execute(
            """
            select t.ticket_id from intermediate.int_callcentre__ticket_origins as t
            join intermediate.int_identity__record_customers as r
                on r.source = 'tickets' and r.source_key = t.ticket_id
            where t.is_complaint and t.opened_on <= ? and t.resolved_at is null
            limit 1
            """,
            [cutoff],
        ).fetchall()[0][0]
        # The future arrives: an order, a complaint and a call after the cutoff, and a
        # complaint open at the cutoff is resolved later.
        later = cutoff + timedelta(days=1)
        conn.execute(
            "insert into intermediate.int_sales__customer_orders by name "
            "select ? as customer_id, -1 as order_id, ? as ordered_on, "
            "cast(? as timestamp) as ordered_at, 999.0 as order_amount, false as is_reversed",
            [customer, later, later],
        )
        conn.execute(
            "insert into intermediate.int_callcentre__ticket_origins by name "
            "select 'future-ticket' as ticket_id, ? as opened_on, true as is_complaint",
            [later],
        )
        conn.execute(
            "insert into identity.records by name "
            "select 'tickets:future-ticket' as record_id, 'tickets' as source, "
            "'future-ticket' as source_key, 'x' as fingerprint, ? as customer_id, "
            "now() as linked_at, 'test' as run_id",
            [customer],
        )
        conn.execute(
            "update intermediate.int_callcentre__ticket_origins "
            "set resolved_at = cast(? as timestamp) where ticket_id = ?",
            [cutoff + timedelta(days=3), complaint],
        )
        conn.execute(
            "insert into marts.fct_calls by name "
            "select 'future-call' as call_id, ? as call_date, false as is_abandoned",
            [later],
        )
        conn.execute(
            "insert into intermediate.int_callcentre__call_customers by name "
            "select 'future-call' as call_id, ? as customer_id",
            [customer],
        )
        after = churn_features(conn, cutoff)
        # The planted rows are really there: the next day's features and the label see them.
        next_day = churn_features(conn, later).set_index("customer_id").loc[customer]
        label = churn_labels(conn, cutoff, 30).set_index("customer_id").loc[customer, "churned"]
    pd.testing.assert_frame_equal(before, after)
    assert next_day["days_since_last_order"] == 0
    assert next_day["calls_30d"] >= 1
    assert not label


def test_scores_are_written_with_a_report_and_planted_churners_rank_high(
    resolved_home: Settings,
) -> None:
    with _read(resolved_home) as conn:
        buyers, scored, clv_rows, bands, bad = conn.execute(
            """
            select
                (select count(distinct customer_id) from intermediate.int_sales__customer_orders
                 where not is_reversed),
                (select count(*) from ml.churn_scores),
                (select count(*) from ml.customer_clv),
                (select count(distinct churn_risk_band) from ml.churn_scores),
                (select count(*) from ml.churn_scores
                 where churn_probability not between 0 and 1)
            """
        ).fetchall()[0]
        scores = conn.execute("select customer_id, churn_probability from ml.churn_scores")
        planted = planted_churn_auc(conn, resolved_home.truth_dir, scores.fetchall(), _as_of(conn))
        report = json.loads(
            (resolved_home.reports_dir / "scoring" / "latest.json").read_text(encoding="utf-8")
        )
        # The same on the holdout: the live model at the holdout cutoff, against the members
        # planted to have stopped buying by then.
        registry = ModelRegistry(resolved_home.models_dir / "churn")
        live = registry.load(str(registry.live_version()))
        cutoff = date.fromisoformat(report["holdout_cutoff"])
        holdout_features = churn_features(conn, cutoff)
        planted_on_holdout = planted_churn_auc(
            conn,
            resolved_home.truth_dir,
            list(zip(holdout_features["customer_id"], live.predict(holdout_features), strict=True)),
            cutoff,
        )
    assert scored == clv_rows == buyers > 1_500
    assert bands == 3 and bad == 0
    holdout = report["churn_holdout"]
    assert holdout["roc_auc"] >= 0.72
    assert 0 < holdout["brier"] < 0.25
    assert len(holdout["calibration"]) >= 5
    assert report["clv"]["holdout"]["by_repeat_purchases"]
    # Members planted to stop buying, against every other buyer, on the day scored.
    assert planted["planted_scored"] >= 50
    assert planted["roc_auc"] >= 0.80, planted
    assert planted_on_holdout["planted_scored"] >= 50
    assert planted_on_holdout["roc_auc"] >= 0.80, planted_on_holdout
    folder = next((resolved_home.reports_dir / "scoring").glob("2*"))
    for name in ("report.html", "churn_roc_pr.png", "churn_calibration.png", "clv_holdout.png"):
        assert (folder / name).stat().st_size > 1_000, name
    assert "流失风险" in (folder / "report.html").read_text(encoding="utf-8")


def test_the_scoring_metrics_are_asset_metadata(resolved_home: Settings) -> None:
    instance = dagster_instance(resolved_home)
    event = instance.get_latest_materialization_event(dg.AssetKey(["ml", "churn_scores"]))
    assert event is not None and event.asset_materialization is not None
    metadata = event.asset_materialization.metadata
    assert 0.5 < metadata["holdout_roc_auc"].value <= 1
    assert metadata["promoted"].value is True
    assert str(metadata["report"].value).endswith("report.html")


def test_reasons_quote_real_features_of_that_customer(resolved_home: Settings) -> None:
    with _read(resolved_home) as conn:
        as_of = _as_of(conn)
        features = churn_features(conn, as_of).set_index("customer_id")
        reasons = conn.execute(
            "select customer_id, churn_reason_codes, churn_reasons_zh, churn_reasons_en "
            "from ml.churn_scores where churn_risk_band = 'high'"
        ).fetchall()
    assert len(reasons) > 50
    checked = 0
    for customer, codes, text_zh, text_en in reasons:
        assert codes, customer  # a high risk always has a reason
        for code, zh, en in zip(
            codes.split(","), text_zh.split("；"), text_en.split("; "), strict=True
        ):
            feature = FEATURES[code]
            value = float(features.loc[customer, code])
            assert feature.risk_direction != 0
            if feature.reason_beyond is not None:
                assert (
                    value * feature.risk_direction > feature.reason_beyond * feature.risk_direction
                )
            # Each reason quotes this customer's own value, in the feature's format.
            if code in ("spend_90d", "average_order_value"):
                shown = f"{value:,.0f}"
            elif code == "gap_overdue_ratio":
                shown = f"{value:.1f}"
            elif code == "orders_change_30d":
                shown = f"{int(value):+d}"
            else:
                shown = f"{int(value):d}"
            assert zh == feature.reason_zh.format(value=shown), (customer, code)
            assert en == feature.reason_en.format(value=shown), (customer, code)
            checked += 1
    assert checked > 150


def test_tree_contributions_are_lightgbms_own_treeshap_values(resolved_home: Settings) -> None:
    with _read(resolved_home) as conn:
        current = churn_features(conn, _as_of(conn))
    registry = ModelRegistry(resolved_home.models_dir / "churn")
    model = registry.load(str(registry.live_version()))
    # Besides the customers: rows exactly at each split's threshold, a hair either side of
    # it, at zero and missing, where a row could be put in the wrong class.
    splits = model.trees.booster_.trees_to_dataframe().dropna(subset=["split_feature"])
    edges = []
    for name, threshold in zip(splits["split_feature"], splits["threshold"], strict=True):
        below, above = np.nextafter(threshold, -np.inf), np.nextafter(threshold, np.inf)
        for value in (threshold, below, above, 0.0, -0.0, np.nan):
            row = current.iloc[len(edges) % len(current)].copy()
            row[name] = value
            edges.append(row)
    rows = pd.concat([current, pd.DataFrame(edges)], ignore_index=True)
    matrix = rows[model.feature_names].astype("float64")
    lightgbm = np.asarray(model.trees.predict(matrix, pred_contrib=True))
    np.testing.assert_allclose(
        tree_contributions(model.trees.booster_, matrix), lightgbm, rtol=0, atol=1e-12
    )
    np.testing.assert_array_equal(
        model.contributions(rows), tree_contributions(model.trees.booster_, matrix)[:, :-1]
    )
    # Trees that never split (a leaf each) still count, in the bias.
    tiny = matrix.iloc[:60]
    stumps = LGBMClassifier(n_estimators=3, min_child_samples=1000, verbose=-1).fit(
        tiny, np.arange(len(tiny)) % 2
    )
    assert stumps.booster_.trees_to_dataframe()["split_feature"].isna().all()
    np.testing.assert_allclose(
        tree_contributions(stumps.booster_, tiny),
        np.asarray(stumps.predict(tiny, pred_contrib=True)),
        rtol=0,
        atol=1e-12,
    )


def test_next_actions_follow_the_rules_and_tiers_rank_on_lifetime_value(
    resolved_home: Settings,
) -> None:
    with _read(resolved_home) as conn:
        actions = conn.execute(
            """
            select churn_risk_band, value_tier, has_marketing_consent, next_action, count(*)
            from marts.customer_scores group by all
            """
        ).fetchall()
        tiers = dict(
            conn.execute(
                """
                select value_tier, min(customer_value) from marts.customer_segments
                where customer_value_basis = 'predicted_clv' group by value_tier
                """
            ).fetchall()
        )
        top_of_next = dict(
            conn.execute(
                "select value_tier, max(customer_value) from marts.customer_segments "
                "group by value_tier"
            ).fetchall()
        )
        unscored_buyers = conn.execute(
            """
            select count(*) from marts.customer_segments as s
            join ml.customer_clv as c using (customer_id)
            where s.customer_value_basis <> 'predicted_clv'
            """
        ).fetchall()[0][0]
    for band, tier, consent, action, _count in actions:
        if band == "high" and tier in ("diamond", "gold"):
            assert action == "manager_call"
        if action == "retention_coupon":
            assert consent and tier == "silver"
        if tier == "regular" and band != "unscored":
            assert action == "no_action"  # low value: no offer, no call
    assert len({a[3] for a in actions}) >= 3
    assert {a[3] for a in actions} >= {"no_action", "lead_nurture"}
    assert unscored_buyers == 0
    assert tiers["diamond"] >= top_of_next["gold"] and tiers["gold"] >= top_of_next["silver"]


def test_a_worse_candidate_is_not_promoted(resolved_home: Settings, tmp_path: Path) -> None:
    with _read(resolved_home) as conn:
        first, last = conn.execute(
            "select min(ordered_on), max(ordered_on) from intermediate.int_sales__customer_orders"
        ).fetchall()[0]
        timeline = plan_timeline(first, last, ScoringConfig())
        examples = training_examples(conn, timeline.training_cutoffs, 30)
        holdout = churn_features(conn, timeline.holdout_cutoff).merge(
            churn_labels(conn, timeline.holdout_cutoff, 30), on="customer_id"
        )
    registry = ModelRegistry(tmp_path / "churn")
    good = register_candidate(registry, fit_churn(examples), holdout)
    assert good.promoted and registry.live_version() == "v0001"
    # The same features with the labels shuffled: a model that learnt nothing.
    shuffled = examples.assign(
        churned=np.random.default_rng(0).permutation(examples["churned"].to_numpy())
    )
    worse = register_candidate(registry, fit_churn(shuffled), holdout)
    assert not worse.promoted
    assert worse.candidate_version == "v0002" and worse.scoring_version == "v0001"
    assert registry.live_version() == "v0001"
    assert worse.candidate_metrics["roc_auc"] < worse.live_metrics["roc_auc"]  # type: ignore[index]
    assert registry.metrics("v0002")["promoted"] is False
    assert "below the live model" in worse.reason
    # An equally good refit is promoted.
    again = register_candidate(registry, fit_churn(examples), holdout)
    assert again.promoted and registry.live_version() == "v0003"


def test_models_are_refitted_on_their_cadence_and_scored_with_between(
    resolved_home: Settings, tmp_path: Path
) -> None:
    models = tmp_path / "models"
    with _read(resolved_home) as conn:
        last = conn.execute(
            "select max(ordered_on) from intermediate.int_sales__customer_orders"
        ).fetchall()[0][0]

        def run_at(as_of: date, refit_every_days: int = 7) -> ScoringRun:
            config = ScoringConfig(as_of=as_of, refit_every_days=refit_every_days)
            run, frames = score(conn, models, config)
            runs.append((run, frames))
            return run

        runs: list[tuple[ScoringRun, dict[str, pd.DataFrame]]] = []
        first = run_at(last - timedelta(days=7))
        assert first.churn_refitted and first.clv_refitted and first.promoted
        # A day later: the live fits are a day old, so they score the day without a refit.
        between = run_at(last - timedelta(days=6))
        assert not between.churn_refitted and not between.clv_refitted
        assert not between.promoted and "not refitted" in between.promotion_reason
        assert (between.churn_version, between.clv_version) == ("v0001", "v0001")
        assert between.timeline.as_of == last - timedelta(days=6)
        # Scores are of the day: everyone is a day older on the same parameters.
        scores_first = runs[0][1]["customer_clv"].set_index("customer_id")
        scores_between = runs[1][1]["customer_clv"].set_index("customer_id")
        assert (scores_between["as_of_date"] == pd.Timestamp(last - timedelta(days=6))).all()
        assert between.clv["bg_nbd"] == first.clv["bg_nbd"]
        assert not scores_between["probability_alive"].equals(scores_first["probability_alive"])
        # The kept model is still judged on the day's holdout.
        assert 0.5 < between.candidate_metrics["roc_auc"] <= 1
        # Seven days of data later the fits are due again; and 0 refits on every run.
        due = run_at(last)
        assert due.churn_refitted and due.clv_refitted and due.candidate_version == "v0002"
        every_run = run_at(last, refit_every_days=0)
        assert every_run.churn_refitted and every_run.candidate_version == "v0003"
    assert ModelRegistry(models / "clv").versions() == ["v0001", "v0002", "v0003"]
