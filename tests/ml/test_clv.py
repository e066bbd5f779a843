"""`fit_clv` on a transactions frame: the literature's parameters on CDNOW, and sensible
predictions on a frame made by hand."""

from __future__ import annotations

from pathlib import Path

import lifetimes
import numpy as np
import pandas as pd
import pytest

from ml.clv import clv_holdout, fit_clv, predict_clv


def _cdnow_sample() -> pd.DataFrame:
    """The 1/10 CDNOW sample of Fader, Hardie & Lee (2005), shipped inside lifetimes."""
    path = Path(lifetimes.__file__).parent / "datasets" / "CDNOW_sample.txt"
    frame = pd.read_csv(
        path,
        sep=r"\s+",
        header=None,
        names=["master_id", "customer_id", "date", "quantity", "amount"],
        dtype={"date": str},
    )
    frame["date"] = pd.to_datetime(frame["date"], format="%Y%m%d")
    return frame


def test_the_cdnow_sample_gives_the_published_parameters() -> None:
    # Calibration period of the paper: 1997-01-01 to 1997-09-30 (39 weeks).
    fit = fit_clv(_cdnow_sample(), "1997-09-30", penalizer=0.0)
    assert len(fit.predictions) == 2357
    # BG/NBD (Fader, Hardie & Lee 2005): r 0.243, alpha 4.414 weeks, a 0.793, b 2.426;
    # alpha is in days here.
    assert fit.bg_nbd["r"] == pytest.approx(0.243, rel=0.01)
    assert fit.bg_nbd["alpha"] / 7 == pytest.approx(4.414, rel=0.01)
    assert fit.bg_nbd["a"] == pytest.approx(0.793, rel=0.01)
    assert fit.bg_nbd["b"] == pytest.approx(2.426, rel=0.01)
    # Gamma–Gamma (Fader & Hardie 2013): p 6.25, q 3.74, v 15.44.
    assert fit.gamma_gamma["p"] == pytest.approx(6.25, rel=0.01)
    assert fit.gamma_gamma["q"] == pytest.approx(3.74, rel=0.01)
    assert fit.gamma_gamma["v"] == pytest.approx(15.44, rel=0.01)


def test_predictions_rank_frequent_recent_buyers_above_lapsed_ones() -> None:
    rng = np.random.default_rng(3)
    rows = []
    for customer in range(300):
        # Even customers buy every ~10 days to the end; odd ones stopped after 60 days.
        # Each has a typical basket of their own, as Gamma-Gamma assumes.
        last_day = 300 if customer % 2 == 0 else 60
        basket = float(rng.gamma(3.0, 40.0))
        for day in range(0, last_day, int(rng.integers(7, 14))):
            when = pd.Timestamp("2026-01-01") + pd.Timedelta(days=day)
            rows.append((f"C{customer}", when, float(rng.gamma(6.0, basket / 6.0))))
    transactions = pd.DataFrame(rows, columns=["customer_id", "date", "amount"])
    fit = fit_clv(transactions, "2026-10-31", horizon_days=90)
    predictions = fit.predictions.set_index("customer_id")
    active = predictions.loc[[f"C{c}" for c in range(0, 300, 2)]]
    lapsed = predictions.loc[[f"C{c}" for c in range(1, 300, 2)]]
    assert active["probability_alive"].median() > 0.9 > lapsed["probability_alive"].median()
    assert active["expected_purchases"].median() > 3 * lapsed["expected_purchases"].median()
    assert (predictions["expected_value"] >= 0).all()
    assert fit.observation_end.isoformat() == "2026-10-31"


def test_transactions_after_the_observation_end_are_ignored() -> None:
    transactions = pd.DataFrame(
        {
            "customer_id": ["a", "a", "a", "b", "b", "b"],
            "date": ["2026-01-01", "2026-02-01", "2026-12-01", "2026-01-05", "2026-03-01",
                     "2026-04-01"],
            "amount": [10.0, 20.0, 999.0, 5.0, 5.0, 5.0],
        }
    )  # fmt: skip
    fit = fit_clv(transactions, "2026-06-30")
    frequency = fit.predictions.set_index("customer_id")["frequency"]
    assert frequency.to_dict() == {"a": 1.0, "b": 2.0}
    with pytest.raises(KeyError):
        fit_clv(transactions.rename(columns={"amount": "value"}), "2026-06-30")


def test_customers_without_repeat_purchases_keep_a_positive_value_when_spend_is_heavy_tailed() -> (
    None
):
    # Baskets from a Pareto with a heavy tail: Gamma–Gamma fits q <= 1 (no finite mean),
    # where its formula turns negative for one-time buyers.
    rng = np.random.default_rng(5)
    rows = []
    for customer in range(400):
        basket = float(rng.pareto(0.8) * 100 + 10)
        visits = 1 if customer % 3 == 0 else int(rng.integers(2, 8))
        for visit in range(visits):
            when = pd.Timestamp("2026-01-01") + pd.Timedelta(days=int(visit * 30 + customer % 20))
            rows.append((f"C{customer}", when, basket * float(rng.uniform(0.8, 1.2))))
    fit = fit_clv(pd.DataFrame(rows, columns=["customer_id", "date", "amount"]), "2026-10-31")
    assert fit.gamma_gamma["q"] <= 1
    one_time = fit.predictions[fit.predictions["frequency"] == 0]
    assert len(one_time) > 100
    assert (fit.predictions["expected_average_value"] > 0).all()
    assert (fit.predictions["expected_value"] >= 0).all()


def test_holdout_check_compares_predicted_and_actual_purchases_per_bucket() -> None:
    rng = np.random.default_rng(8)
    rows = []
    for customer in range(500):
        rate = float(rng.gamma(2.0, 0.02))  # purchases per day, steady
        day = float(rng.exponential(1 / rate))
        while day < 300:
            rows.append(
                (f"C{customer}", pd.Timestamp("2026-01-01") + pd.Timedelta(days=int(day)), 50.0)
            )
            day += float(rng.exponential(1 / rate))
    transactions = pd.DataFrame(rows, columns=["customer_id", "date", "amount"])
    check = clv_holdout(transactions, "2026-08-31", "2026-10-27")
    buckets = {row["repeat_purchases"]: row for row in check["by_repeat_purchases"]}
    assert check["holdout_days"] == 57
    # Steady Poisson buyers: BG/NBD's forecast is close overall and rises with frequency.
    assert check["predicted_total"] == pytest.approx(check["actual_total"], rel=0.15)
    assert buckets["0"]["predicted"] < buckets["3"]["predicted"] < buckets["6+"]["predicted"]
    assert buckets["6+"]["actual"] > buckets["0"]["actual"]


def test_predicting_with_fitted_parameters_needs_no_refit() -> None:
    transactions = _cdnow_sample()
    fit = fit_clv(transactions, "1997-09-30")
    # The same parameters on the same data: exactly the fit's predictions.
    same = predict_clv(
        transactions, "1997-09-30", fit.bg_nbd, fit.gamma_gamma, horizon_days=fit.horizon_days
    )
    assert same.bg_nbd == fit.bg_nbd and same.gamma_gamma == fit.gamma_gamma
    pd.testing.assert_frame_equal(same.predictions, fit.predictions)
    # A week later, with the week's purchases, on the same parameters: everyone is a week
    # older, and those who bought that week have one more repeat purchase, made after the
    # fit's end; the repeat buyers among them are more likely to be alive than they were
    # (BG/NBD counts a customer without repeat purchases as alive for certain).
    later = predict_clv(
        transactions, "1997-10-07", fit.bg_nbd, fit.gamma_gamma, horizon_days=fit.horizon_days
    )
    assert later.observation_end.isoformat() == "1997-10-07"
    assert later.bg_nbd == fit.bg_nbd
    ages = (
        later.predictions.set_index("customer_id")["T"]
        - fit.predictions.set_index("customer_id")["T"]
    )
    assert (ages == 7).all()
    bought = later.predictions.set_index("customer_id")
    before = fit.predictions.set_index("customer_id")
    again = bought.index[bought["frequency"] > before["frequency"]]
    assert len(again) > 10
    assert (bought.loc[again, "recency"] > before.loc[again, "T"]).all()
    repeat = again[before.loc[again, "frequency"] > 0]
    assert len(repeat) > 10
    assert (bought.loc[repeat, "probability_alive"] > before.loc[repeat, "probability_alive"]).all()


# The BG/NBD parameters of Fader, Hardie & Lee (2005) on CDNOW, alpha in days.
CDNOW_BG_NBD = {"r": 0.243, "alpha": 4.414 * 7, "a": 0.793, "b": 2.426}


def test_the_purchase_summary_is_lifetimes_own() -> None:
    """The per-customer summary the models are fitted on (computed in SQL) equals lifetimes'
    `summary_data_from_transaction_data`: on CDNOW, where a customer buys several times a
    day, and on ids in Chinese with purchases later on the last day."""
    cdnow = _cdnow_sample()[["customer_id", "date", "amount"]]
    shop = pd.DataFrame(
        {
            "customer_id": ["客户甲", "客户甲", "客户甲", "客户乙", "客户乙", "客户丙"],
            "date": pd.to_datetime(["2026-03-01 09:00", "2026-03-01 18:30", "2026-03-09 12:00",
                                    "2026-03-02 08:00", "2026-03-10 23:59", "2026-03-10 00:00"]),
            "amount": [12.5, 7.5, 30.0, 99.0, 1.0, 5.0],
        }
    )  # fmt: skip
    for transactions, end in ((cdnow, "1997-09-30"), (shop, "2026-03-10")):
        # Predicting with given parameters fits nothing: a three-customer frame works too.
        fit = predict_clv(transactions, end, CDNOW_BG_NBD, {})
        ours = fit.predictions.set_index("customer_id")[["frequency", "recency", "T",
                                                          "monetary_value"]]  # fmt: skip
        included = transactions[transactions["date"] <= pd.Timestamp(end)]
        theirs = lifetimes.utils.summary_data_from_transaction_data(
            included, "customer_id", "date", monetary_value_col="amount",
            observation_period_end=end, freq="D",
        )  # fmt: skip
        pd.testing.assert_frame_equal(
            ours, theirs.loc[ours.index], check_names=False, check_index_type=False
        )
    # 客户乙's purchase at 23:59 on the last day is after the end (midnight): not counted.
    assert fit.predictions.set_index("customer_id").loc["客户乙", "frequency"] == 0.0


def test_a_spend_model_that_does_not_converge_is_fitted_again_with_a_stronger_penalty() -> None:
    # Every purchase costs the same: the spend model's maximum likelihood runs off to
    # infinity, and lifetimes stops with ConvergenceError unless penalised.
    rng = np.random.default_rng(5)
    rows = [
        (f"C{customer}", pd.Timestamp("2026-01-01") + pd.Timedelta(days=int(day)), 100.0)
        for customer in range(400)
        for day in np.sort(rng.choice(300, size=int(rng.integers(1, 8)), replace=False))
    ]
    transactions = pd.DataFrame(rows, columns=["customer_id", "date", "amount"])
    repeaters = transactions.groupby("customer_id").size() > 1
    with pytest.raises(lifetimes.utils.ConvergenceError):
        summary = lifetimes.utils.summary_data_from_transaction_data(
            transactions, "customer_id", "date", "amount", observation_period_end="2026-10-31"
        )
        summary = summary[summary["frequency"] > 0]
        lifetimes.GammaGammaFitter(penalizer_coef=0.0).fit(
            summary["frequency"], summary["monetary_value"]
        )

    fit = fit_clv(transactions, "2026-10-31", penalizer=0.0)

    assert set(fit.gamma_gamma) == {"p", "q", "v"}
    predictions = fit.predictions.set_index("customer_id")
    bought_again = predictions.loc[repeaters[repeaters].index]
    # Every purchase was 100: the expected purchase of anyone who bought again stays near it
    # (the penalty that made the fit converge shrinks the model a little).
    assert bought_again["expected_average_value"].to_numpy() == pytest.approx(100.0, rel=0.2)
