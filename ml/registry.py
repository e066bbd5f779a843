"""Versioned models on disk, with the rule that decides which one is live.

`CRM_HOME/models/<kind>/v0001/` holds a model (`model.joblib`) and its holdout metrics
(`metrics.json`); `live.json` names the version scoring uses. A candidate becomes live only
when it is not worse than the live model on the same holdout (`should_promote`).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import joblib

# How much worse than the live model a candidate may be before it is refused: the holdout
# figures of two fits on nearly the same data differ by about this much from noise alone.
DEFAULT_TOLERANCE = 0.005


@dataclass(frozen=True)
class Promotion:
    promoted: bool
    reason: str


def should_promote(
    candidate: dict[str, Any], live: dict[str, Any] | None, tolerance: float = DEFAULT_TOLERANCE
) -> Promotion:
    """Promote unless the candidate ranks worse (lower ROC AUC) or is less well calibrated
    (higher Brier score) than the live model by more than `tolerance`, both measured on the
    same holdout."""
    if live is None:
        return Promotion(True, "no live model yet")
    if candidate["roc_auc"] < live["roc_auc"] - tolerance:
        return Promotion(
            False,
            f"ROC AUC {candidate['roc_auc']:.4f} is below the live model's {live['roc_auc']:.4f}",
        )
    if candidate["brier"] > live["brier"] + tolerance:
        return Promotion(
            False,
            f"Brier score {candidate['brier']:.4f} is above the live model's {live['brier']:.4f}",
        )
    return Promotion(
        True,
        f"ROC AUC {candidate['roc_auc']:.4f} against {live['roc_auc']:.4f}, "
        f"Brier {candidate['brier']:.4f} against {live['brier']:.4f}",
    )


class ModelRegistry:
    """The versions of one kind of model under `root`."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def versions(self) -> list[str]:
        if not self.root.exists():
            return []
        return sorted(p.name for p in self.root.iterdir() if p.is_dir() and p.name[0] == "v")

    def save(self, model: object, metrics: dict[str, Any]) -> str:
        """Store `model` and its metrics as the next version; returns the version name."""
        existing = self.versions()
        version = f"v{int(existing[-1][1:]) + 1 if existing else 1:04d}"
        folder = self.root / version
        folder.mkdir(parents=True)
        joblib.dump(model, folder / "model.joblib")
        (folder / "metrics.json").write_text(
            json.dumps(metrics, indent=2, ensure_ascii=False, default=str), encoding="utf-8"
        )
        return version

    def live_version(self) -> str | None:
        pointer = self.root / "live.json"
        if not pointer.exists():
            return None
        return str(json.loads(pointer.read_text(encoding="utf-8"))["version"])

    def load(self, version: str) -> Any:
        return joblib.load(self.root / version / "model.joblib")

    def metrics(self, version: str) -> dict[str, Any]:
        return json.loads((self.root / version / "metrics.json").read_text(encoding="utf-8"))

    def promote(self, version: str, reason: str) -> None:
        """Point `live.json` at `version`, atomically: a reader sees the old or the new."""
        pointer = self.root / "live.json"
        staging = pointer.with_suffix(".json.tmp")
        staging.write_text(
            json.dumps({"version": version, "reason": reason}, ensure_ascii=False),
            encoding="utf-8",
        )
        os.replace(staging, pointer)
