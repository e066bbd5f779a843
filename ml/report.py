"""The evaluation report of a scoring run: `report.json`, plots as PNG and a readable
`report.html` under `CRM_HOME/reports/scoring/<run time>/`, with `latest.json` beside."""

from __future__ import annotations

import html
import json
import shutil
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only: no display on a server

import matplotlib.pyplot as plt
import pandas as pd
from sklearn.metrics import precision_recall_curve, roc_curve

from ml.scoring import ScoringRun


def write_report(run: ScoringRun, holdout: pd.DataFrame, reports_dir: Path) -> Path:
    """Write the report of `run` (with the holdout's labels and candidate probabilities)
    and return its folder."""
    folder = reports_dir / "scoring" / run.run_at.strftime("%Y%m%dT%H%M%S")
    folder.mkdir(parents=True, exist_ok=True)
    summary = {**run.summary(), "report_html": str(folder / "report.html")}
    (folder / "report.json").write_text(
        json.dumps(summary, indent=2, ensure_ascii=False), encoding="utf-8"
    )
    plots = {
        "churn_roc_pr.png": _roc_pr(holdout, summary["churn_holdout"]),
        "churn_calibration.png": _calibration(summary["churn_holdout"]["calibration"]),
        "clv_holdout.png": _clv_buckets(summary["clv"]["holdout"]["by_repeat_purchases"]),
    }
    for name, figure in plots.items():
        figure.savefig(folder / name, dpi=110, bbox_inches="tight")
        plt.close(figure)
    (folder / "report.html").write_text(_html(summary, list(plots)), encoding="utf-8")
    shutil.copyfile(folder / "report.json", reports_dir / "scoring" / "latest.json")
    return folder


def _roc_pr(holdout: pd.DataFrame, metrics: dict[str, Any]) -> plt.Figure:
    truth = holdout["churned"].astype(int)
    figure, (roc_axis, pr_axis) = plt.subplots(1, 2, figsize=(10, 4.2))
    fpr, tpr, _ = roc_curve(truth, holdout["churn_probability"])
    roc_axis.plot(fpr, tpr, label=f"ROC AUC {metrics['roc_auc']:.3f}")
    roc_axis.plot([0, 1], [0, 1], linestyle=":", color="grey")
    roc_axis.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC")
    roc_axis.legend(loc="lower right")
    precision, recall, _ = precision_recall_curve(truth, holdout["churn_probability"])
    pr_axis.plot(recall, precision, label=f"PR AUC {metrics['pr_auc']:.3f}")
    pr_axis.axhline(metrics["churn_rate"], linestyle=":", color="grey", label="base rate")
    pr_axis.set(xlabel="recall", ylabel="precision", title="Precision-recall")
    pr_axis.legend(loc="upper right")
    return figure


def _calibration(table: list[dict[str, float]]) -> plt.Figure:
    figure, axis = plt.subplots(figsize=(4.6, 4.2))
    axis.plot([0, 1], [0, 1], linestyle=":", color="grey", label="perfect")
    axis.plot(
        [row["predicted"] for row in table],
        [row["observed"] for row in table],
        marker="o",
        label="model",
    )
    axis.set(xlabel="predicted churn probability", ylabel="observed churn rate")
    axis.set_title("Calibration on the holdout")
    axis.legend(loc="upper left")
    return figure


def _clv_buckets(table: list[dict[str, Any]]) -> plt.Figure:
    figure, axis = plt.subplots(figsize=(6, 4.2))
    buckets = [row["repeat_purchases"] for row in table]
    positions = range(len(buckets))
    axis.bar([p - 0.2 for p in positions], [r["predicted"] for r in table], 0.4, label="BG/NBD")
    axis.bar([p + 0.2 for p in positions], [r["actual"] for r in table], 0.4, label="actual")
    axis.set_xticks(list(positions), buckets)
    axis.set(
        xlabel="repeat purchases before the holdout",
        ylabel="mean purchases in the holdout",
        title="Lifetime value: purchases in the holdout",
    )
    axis.legend()
    return figure


def _rows(table: list[dict[str, Any]]) -> str:
    if not table:
        return ""
    head = "".join(f"<th>{html.escape(str(k))}</th>" for k in table[0])
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in row.values()) + "</tr>"
        for row in table
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def _html(summary: dict[str, Any], plots: list[str]) -> str:
    churn = summary["churn_holdout"]
    live = summary["live_model_on_holdout"]
    clv = summary["clv"]
    figures = "".join(f'<img src="{name}" alt="{name}">' for name in plots)
    live_line = (
        f"live model on the same holdout: ROC AUC {live['roc_auc']}, Brier {live['brier']}"
        if live
        else "no comparable live model"
    )
    if summary.get("churn_refitted", True):
        trained_line = (
            "Trained on cutoffs " + html.escape(", ".join(summary["training_cutoffs"])) + "."
        )
        decision_line = (
            f"Candidate {html.escape(summary['churn_candidate_version'])}: "
            + ("promoted" if summary["promoted"] else "<b>not promoted</b>")
            + f" ({html.escape(summary['promotion_reason'])}); {html.escape(live_line)}."
        )
    else:
        trained_line = "These are the live model's figures on this run's holdout."
        decision_line = f"Not retrained ({html.escape(summary['promotion_reason'])})."
    clv_kept = "" if summary.get("clv_refitted", True) else " (kept, not refitted)"
    return f"""<!doctype html>
<html lang="zh-CN"><head><meta charset="utf-8">
<title>评分报告 / Scoring report {html.escape(summary["as_of"])}</title>
<style>body{{font-family:sans-serif;max-width:1100px;margin:2em auto}}
table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:2px 8px}}
img{{max-width:100%;margin:8px 0}}</style></head><body>
<h1>评分报告 / Scoring report — {html.escape(summary["as_of"])}</h1>
<h2>流失风险 / Churn risk</h2>
<p>Holdout cutoff {html.escape(summary["holdout_cutoff"])} ({churn["rows"]} customers,
churn rate {churn["churn_rate"]}): ROC AUC <b>{churn["roc_auc"]}</b>, PR AUC
<b>{churn["pr_auc"]}</b>, Brier <b>{churn["brier"]}</b>. {trained_line}</p>
<p>{decision_line}
Scoring used {html.escape(summary["churn_live_version"])}.
Risk bands: {html.escape(json.dumps(summary["risk_bands"]))}.</p>
<h3>Calibration / 校准</h3>{_rows(churn["calibration"])}
<h2>客户终身价值 / Customer lifetime value</h2>
<p>BG/NBD {html.escape(json.dumps(clv["bg_nbd"]))}; Gamma–Gamma
{html.escape(json.dumps(clv["gamma_gamma"]))}; horizon {clv["horizon_days"]} days;
fitted on orders to {html.escape(clv["observation_end"])}{clv_kept}.
Holdout from {html.escape(clv["holdout"]["calibration_end"])}: predicted
{clv["holdout"]["predicted_total"]} purchases, actual {clv["holdout"]["actual_total"]},
mean absolute error per customer {clv["holdout"]["mean_absolute_error"]}.</p>
{_rows(clv["holdout"]["by_repeat_purchases"])}
{figures}
</body></html>
"""
