"""`crm bench --scale` at a tiny size: the JSON holds real, measured figures. The speed
targets are proven by the bench itself, never here."""

from __future__ import annotations

import json
import math

import pytest

from crm_warehouse.bench_scale import (
    STAGES,
    appended_day_cost,
    attribute_samples,
    fit_exponent,
    fit_line,
    run_scale_bench,
)
from crm_warehouse.settings import Settings


def test_exponent_of_linear_growth_is_one() -> None:
    assert fit_exponent([100_000, 1_000_000, 3_000_000], [10.0, 100.0, 300.0]) == 1.0


def test_exponent_needs_two_sizes() -> None:
    assert fit_exponent([100_000], [10.0]) is None


def test_line_through_the_appended_days_gives_their_fixed_part() -> None:
    assert fit_line([100_000, 1_000_000, 3_000_000], [55.0, 82.0, 142.0]) == pytest.approx(
        (52.0, 30.0 / 1_000_000)
    )
    assert fit_line([100_000, 100_000], [55.0, 56.0]) is None


def test_appended_day_cost_is_a_share_of_the_largest_full_run() -> None:
    runs = [
        {"customers": 100_000, "appended_day": {"seconds": 57.0}, "pipeline": {"seconds": 100.0}},
        {"customers": 1_000_000, "appended_day": {"seconds": 84.0}, "pipeline": {"seconds": 280.0}},
    ]
    cost = appended_day_cost(runs)  # type: ignore[arg-type]
    assert cost == {
        "sizes": [100_000, 1_000_000],
        "fixed_seconds": 54.0,
        "seconds_per_million_customers": 30.0,
        "largest_size": 1_000_000,
        "fixed_share_of_full": round(54.0 / 280.0, 3),
    }
    assert appended_day_cost(runs[:1]) is None  # type: ignore[arg-type]


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
    cost = document["appended_day_cost"]
    assert cost["sizes"] == [1_500, 3_000] and cost["largest_size"] == 3_000
    assert math.isfinite(cost["fixed_seconds"]) and math.isfinite(cost["fixed_share_of_full"])
    assert document["target"] == "duckdb"
    assert "dbt steps built on duckdb" in results.render()
    assert "growth exponent" in results.render()
    assert "s fixed +" in results.render()


def test_stage_between_two_samples_gets_the_nearer_ones() -> None:
    spans = [(10.0, 10.1, "publish")]
    samples = [(9.9, 600.0), (10.2, 650.0), (11.0, 999.0)]
    assert attribute_samples(samples, spans) == {"orchestration": 999.0, "publish": 650.0}
