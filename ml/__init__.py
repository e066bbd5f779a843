"""Scoring: churn risk with reasons (`ml.churn`), lifetime value (`ml.clv`), the scoring run
with its holdout, promotion and report (`ml.scoring`, `ml.registry`, `ml.report`)."""
