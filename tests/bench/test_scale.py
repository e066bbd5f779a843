"""`crm bench --scale` at a tiny size: the JSON holds real, measured figures. The speed
targets are proven by the bench itself, never here."""

from __future__ import annotations

import json
import math

import pytest

from crm_warehouse.bench_scale import STAGES, attribute_samples, fit_exponent, run_scale_bench
from crm_warehouse.settings import Settings


def test_exponent_of_linear_growth_is_one() -> None:
    assert fit_exponent([100_000, 1_000_000, 3_000_000], [10.0, 100.0, 300.0]) == 1.0


def test_exponent_needs_two_sizes() -> None:
    assert fit_exponent([100_000], [10.0]) is None


def test_sample_counts_for_the_step_running_then() -> None:
    spans = [(10.0, 20.0, "ingest"), (20.5, 30.0, "marts")]
    samples = [(12.0, 500.0), (15.0, 700.0), (20.2, 900.0), (25.0, 800.0)]
    assert attribute_samples(samples, spans) == {
        "ingest": 700.0,
        "orchestration": 900.0,
        "marts": 800.0,
    }


@pytest.mark.slow
def test_scale_bench_writes_measured_figures(crm_home: Settings) -> None:
    # 90 days: churn scoring needs history before its two 30-day windows.
    results = run_scale_bench(crm_home, [1_500, 3_000], days=90)
    document = json.loads(results.path.read_text(encoding="utf-8"))

    assert document["machine"]["cpus"] >= 1
    assert [run["customers"] for run in document["runs"]] == [1_500, 3_000]
    for run in document["runs"]:
        assert list(run["stages"]) == list(STAGES)
        for name, figures in run["stages"].items():
            assert figures["seconds"] > 0, name
            assert figures["peak_rss_mb"] > 0, name
            if name != "orchestration":
                assert figures["rows"] > 0, name
        assert "skipped" not in run["stages"]["scoring"]
        stepped = sum(f["seconds"] for n, f in run["stages"].items() if n != "generate")
        assert stepped == pytest.approx(run["pipeline"]["seconds"], abs=0.1)
        assert run["appended_day"]["seconds"] > 0
        assert run["appended_day"]["rows_ingested"] > 0
        assert run["appended_day"]["share_of_full"] > 0
        baseline = run["baseline"]
        assert baseline["seconds"] > 0
        assert baseline["nodes"]["models"] > 0 and baseline["nodes"]["tests"] > 0
        assert baseline["ratio"] == pytest.approx(
            baseline["orchestrated_dbt_seconds"] / baseline["seconds"], rel=0.01
        )
        assert isinstance(run["targets"]["orchestration_ratio"]["met"], bool)
        assert run["targets"]["pipeline_seconds_at_1m"]["met"] is None
    exponents = document["exponents"]
    assert math.isfinite(exponents["total"])
    assert all(math.isfinite(value) for value in exponents["stages"].values())
    assert document["verdict"]["pipeline_at_1m_met"] is None
    assert "growth exponent" in results.render()


def test_stage_between_two_samples_gets_the_nearer_ones() -> None:
    spans = [(10.0, 10.1, "publish")]
    samples = [(9.9, 600.0), (10.2, 650.0), (11.0, 999.0)]
    assert attribute_samples(samples, spans) == {"orchestration": 999.0, "publish": 650.0}
