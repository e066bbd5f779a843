"""The promotion rule and the scoring timeline, on plain values."""

from __future__ import annotations

from datetime import date

import pytest

from ml.registry import should_promote
from ml.scoring import NotEnoughHistory, ScoringConfig, plan_timeline


def test_promotion_rule_weighs_ranking_and_calibration() -> None:
    live = {"roc_auc": 0.80, "brier": 0.18}
    assert should_promote({"roc_auc": 0.81, "brier": 0.18}, live).promoted
    assert should_promote({"roc_auc": 0.798, "brier": 0.182}, live).promoted  # within noise
    assert not should_promote({"roc_auc": 0.78, "brier": 0.17}, live).promoted
    assert not should_promote({"roc_auc": 0.82, "brier": 0.20}, live).promoted
    assert should_promote({"roc_auc": 0.5, "brier": 0.3}, None).promoted


def test_too_short_a_history_says_how_much_is_needed() -> None:
    with pytest.raises(NotEnoughHistory, match="needs 88 days"):
        plan_timeline(date(2026, 10, 1), date(2026, 10, 31), ScoringConfig())
    timeline = plan_timeline(date(2026, 5, 1), date(2026, 10, 31), ScoringConfig())
    assert timeline.holdout_cutoff == date(2026, 10, 1)
    assert max(timeline.training_cutoffs) == date(2026, 9, 1)
    assert len(timeline.training_cutoffs) == 12
