"""`crm bench --scale`: the whole pipeline, through Dagster and dbt, at growing population
sizes, against the same SQL run bare on DuckDB.

For each size, in a fresh work folder under CRM_HOME/bench:

1. `generate` the sources (a child process; peak RSS from its rusage);
2. run the real `crm_pipeline` job (`orchestration.run.run_pipeline`) in one child process.
   Per-stage wall time comes from the Dagster run's own step events (STEP_START to
   STEP_SUCCESS of each op); the time outside every step (interpreter start, building the
   definitions and parsing dbt, run bookkeeping) is the `orchestration` stage, so the stages
   add up to the run's wall time. Per-stage peak RSS: one process runs every step, so rusage
   can only give the whole run's peak; instead a thread samples the RSS of that process plus
   its children (the `dbt` subprocesses) every `RSS_SAMPLE_SECONDS`, and each sample counts
   for the step running at its time. Memory the process still holds from earlier steps counts
   too, and a spike shorter than the interval can be missed;
3. the plain-SQL baseline: dbt's compiled SQL (`dbt compile --full-refresh`, not timed) for
   every seed, model, snapshot and data test the pipeline's three dbt steps build, executed
   in DAG order with the duckdb Python API on a copy of the warehouse, with `nfkc()`
   registered as dbt's plugin does. Incremental models are built as full tables and the
   snapshot as its first build, as the full run builds them; unit tests (fixture rows, no
   warehouse data) are left out. The ratio is the three dbt steps' wall time inside the
   Dagster run over that bare SQL's wall time: the Python steps (ingest, Splink, scoring,
   the gate, publishing) run the same code either way;
4. one more day of sources (`generate --append-day`, a child process) and a normal pipeline
   run on it (incremental models, incremental identity), timed like the full run.

Finally the growth exponent: least squares of log(seconds) on log(customers), for the total,
the pipeline, each stage, the baseline and the appended day; and the appended day split into
a fixed part and a part per customer (a straight line through its seconds at each size), so
the share of a full run that a day costs before it reads a single row is a measured figure.
"""

from __future__ import annotations

import json
import math
import os
import platform
import shutil
import statistics
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from graphlib import TopologicalSorter
from importlib import metadata
from pathlib import Path

import duckdb

from crm_warehouse.bench import StageResult, for_each_size, measure_command, report_progress
from crm_warehouse.ingest.validation import quote_identifier
from crm_warehouse.settings import Settings

STAGES = (
    "generate",
    "ingest",
    "staging",
    "identity",
    "marts",
    "scoring",
    "gate",
    "publish",
    "orchestration",
)
# The ops of `crm_pipeline` that are a stage by name; raw loads are `ingest` and steps that
# only evaluate asset checks are `gate` (see `stage_of`).
NAMED_STEPS = {
    "dbt_staging": "staging",
    "identity_resolution": "identity",
    "dbt_marts": "marts",
    "dbt_scored": "marts",
    "customer_scoring": "scoring",
    "serving__snapshot": "publish",
}
DBT_STEPS = ("dbt_staging", "dbt_marts", "dbt_scored")
RSS_SAMPLE_SECONDS = 0.2

PIPELINE_SECONDS_AT_1M_TARGET = 600
ORCHESTRATION_RATIO_TARGET = 1.5
APPENDED_DAY_SHARE_TARGET = 0.15
# "About linear": the fitted exponent of seconds on customers at most this.
LINEAR_EXPONENT_MAX = 1.2
TARGET_SIZE = 1_000_000

# Variables that would point the bench's homes at someone else's sources or warehouse.
_FOREIGN_VARIABLES = ("CRM_FORMS_DIR", "CRM_CALLCENTRE_DIR", "CRM_CAMPAIGNS_DIR", "CRM_SALES_URL")
_PROJECT_DIR = Path(__file__).resolve().parent.parent / "dbt_project"

METHOD = {
    "stages": "generate: its own child process. The others: one Dagster run of crm_pipeline "
    "in one child process; a stage's seconds are the sum of its ops' STEP_START..STEP_SUCCESS "
    "from the run's event log. ingest: the raw loads (files, sales pull); staging: dbt_staging "
    "(seeds, staging, incremental facts, snapshot, their dbt tests); identity: "
    "identity_resolution; marts: dbt_marts + dbt_scored (with their dbt tests); scoring: "
    "customer_scoring; gate: every asset-check op (great-expectations gate, ledger "
    "reconciliation, source freshness); publish: serving__snapshot; orchestration: the run's "
    "wall time outside any step (interpreter start, definitions and dbt parse, bookkeeping).",
    "peak_rss_mb": "generate: rusage of its process. Pipeline stages: the largest sample of "
    f"RSS of the pipeline process plus its children (dbt), sampled every {RSS_SAMPLE_SECONDS} "
    "s and attributed to the step running then (a stage shorter than that, between two "
    "samples, gets the larger of those two); includes memory held from earlier steps.",
    "rows": "generate and ingest: rows read from the sources (ingest's rows_in); staging, "
    "identity, marts, scoring: rows in the tables the stage's ops materialised, after the run; "
    "gate: rows of the tables checked; publish: rows published.",
    "baseline": "dbt compile --full-refresh (not timed); then each seed (read_csv), model "
    "(create or replace table/view as compiled SQL), the snapshot (first build) and data test "
    "(count of failing rows) run bare with the duckdb Python API, in DAG order, on a copy of "
    "the warehouse after the full run; DuckDB defaults as in dbt's profile. Unit tests left "
    "out. ratio = wall time of the ops dbt_staging + dbt_marts + dbt_scored in the Dagster run "
    "/ wall time of the bare SQL. whole_run_ratio = the pipeline's wall time / the same with "
    "those dbt ops and the orchestration stage replaced by the bare SQL.",
    "appended_day": "generate --append-day, then a normal run of crm_pipeline (no full "
    "refresh; the scoring models, fitted the day before, are within their refit cadence and "
    "score without a refit); share_of_full = its pipeline seconds / the full run's pipeline "
    "seconds.",
    "appended_day_cost": "least squares of the appended day's pipeline seconds on customers: "
    "fixed_seconds (the intercept: what a day costs whatever the number of customers, "
    "Dagster, dbt and the gate's per-step costs) and seconds_per_million_customers (the "
    "slope); fixed_share_of_full = fixed_seconds / the full run's pipeline seconds at the "
    "largest size. Null with fewer than two sizes.",
    "targets": f"pipeline seconds (ingest to publish, Dagster and dbt included, generate not) "
    f"at {TARGET_SIZE:,} customers; ratio as in baseline; appended-day share; growth exponent "
    "of total seconds (least squares of log seconds on log customers).",
}


@dataclass
class ScaleResults:
    path: Path
    document: dict[str, object]

    def render(self) -> str:
        return render(self.document)


def run_scale_bench(
    settings: Settings,
    sizes: list[int],
    days: int = 90,
    output: Path | None = None,
    keep_work: bool = False,
    target: str = "duckdb",
) -> ScaleResults:
    """The scale benchmark at each size, in a fresh work folder under CRM_HOME/bench; the
    JSON is rewritten after each size, so a long run that fails later keeps what it measured.
    `target` is the engine the pipeline's dbt steps build on (`CRM_TARGET`: duckdb or spark);
    the bare-SQL baseline is DuckDB's either way."""
    settings.ensure_dirs()
    child_settings = Settings.from_env({**os.environ, "CRM_TARGET": target})
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    path = output or settings.bench_dir / f"bench-scale-{stamp}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    runs: list[dict[str, object]] = []
    document: dict[str, object] = {
        "kind": "crm-warehouse scale benchmark: the whole pipeline through Dagster and dbt, "
        "against its dbt SQL run bare on DuckDB",
        "at": stamp,
        "command": f"crm bench --scale --customers {','.join(map(str, sizes))} --days {days}"
        + (f" --target {target}" if target != "duckdb" else ""),
        "target": target,
        "machine": machine_facts(),
        "settings": {
            "duckdb_memory_limit": settings.duckdb_memory_limit,
            "identity_memory_limit": settings.identity_memory_limit,
            "scoring_memory_limit": settings.scoring_memory_limit,
            "scoring_refit_days": settings.scoring_refit_days,
            # The children read the same environment: where Splink and scoring ran.
            "identity_engine": child_settings.identity_engine,
            "scoring_engine": child_settings.scoring_engine,
            "spark_driver_memory": os.environ.get("CRM_SPARK_DRIVER_MEMORY", "2g")
            if target == "spark"
            else None,
            "dbt": (
                "dbt-duckdb profile: threads 2, DuckDB's default memory limit; pipeline "
                "builds leave out unit tests"
                if target == "duckdb"
                else f"the pipeline's dbt steps on {target} (dbt_project/profiles.yml output "
                f"{target}); the bare-SQL baseline on dbt-duckdb, threads 2"
            ),
            "rss_sample_seconds": RSS_SAMPLE_SECONDS,
        },
        "method": METHOD,
        "targets": {
            "pipeline_seconds_at_1m": PIPELINE_SECONDS_AT_1M_TARGET,
            "orchestration_ratio": ORCHESTRATION_RATIO_TARGET,
            "appended_day_share_of_full": APPENDED_DAY_SHARE_TARGET,
            "linear_exponent_max": LINEAR_EXPONENT_MAX,
        },
        "runs": runs,
    }

    def save() -> None:
        document["exponents"] = exponents(runs)
        document["appended_day_cost"] = appended_day_cost(runs)
        document["verdict"] = verdict(runs, document["exponents"])  # type: ignore[arg-type]
        path.write_text(json.dumps(document, indent=2, ensure_ascii=False), encoding="utf-8")

    for_each_size(
        settings.bench_dir / "scale",
        sizes,
        lambda work, customers: runs.append(_scale_one(work, customers, days, target)),
        save,
        keep_work=keep_work,
    )
    return ScaleResults(path, document)


def machine_facts() -> dict[str, object]:
    import psutil

    versions = {}
    for package in (
        "dagster",
        "dagster-dbt",
        "dbt-core",
        "dbt-duckdb",
        "duckdb",
        "splink",
        "pandas",
        "scikit-learn",
        "great-expectations",
    ):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    return {
        "cpus": os.cpu_count(),
        "memory_mb": round(psutil.virtual_memory().total / 2**20),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "versions": versions,
    }


def _env(work: Path, target: str = "duckdb") -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _FOREIGN_VARIABLES}
    # The baseline is DuckDB SQL: its models build in the DuckDB warehouse whatever the
    # pipeline's target.
    return {**env, "CRM_HOME": str(work), "CRM_TARGET": target}


def _child(
    work: Path, arguments: list[str], sample: bool = False, target: str = "duckdb"
) -> StageResult:
    command = [sys.executable, "-m", "crm_warehouse.bench_stages", str(work), *arguments]
    return measure_command(
        command,
        _env(work, target),
        parse_json=True,
        sample_every=RSS_SAMPLE_SECONDS if sample else None,
    )


def _scale_one(work: Path, customers: int, days: int, target: str) -> dict[str, object]:
    # The machine is shared: a high load average says the seconds below are inflated.
    load_before = list(os.getloadavg())
    generated = report_progress(
        customers, "generate", _child(work, ["generate", str(customers), str(days)])
    )
    full = report_progress(
        customers,
        "pipeline (Dagster run)",
        _child(work, ["pipeline"], sample=True, target=target),
    )
    full_stages = pipeline_stages(full)
    rows_read = full_stages["ingest"]["rows"]
    full_stages = {
        "generate": _with_rate(
            {"seconds": generated.seconds, "peak_rss_mb": generated.peak_rss_mb, "rows": rows_read}
        ),
        **full_stages,
    }
    baseline = _baseline(work, customers, full, full_stages)
    day = report_progress(customers, "append a day", _child(work, ["append-day"]))
    appended = report_progress(
        customers,
        "pipeline, appended day",
        _child(work, ["pipeline"], sample=True, target=target),
    )
    appended_stages = pipeline_stages(appended)
    full_seconds, appended_seconds = pipeline_seconds(full), pipeline_seconds(appended)
    share = appended_seconds / full_seconds
    ratio = baseline["ratio"]
    return {
        "customers": customers,
        "days": days,
        "stages": full_stages,
        "load_average": {"before": load_before, "after": list(os.getloadavg())},
        "pipeline": {
            "seconds": full_seconds,
            "peak_rss_mb": max((mb for _, mb in full.rss_samples), default=None),
            "peak_rss_mb_largest_process": full.peak_rss_mb,
            "run_id": full.detail["run_id"],
            "rss_samples": len(full.rss_samples),
            "bench_accounting_seconds_excluded": full.detail["accounting_seconds"],
        },
        "total": {
            "seconds": round(generated.seconds + full_seconds, 2),
            "pipeline_seconds": full_seconds,
            "generate_seconds": generated.seconds,
        },
        "appended_day": {
            "generate_seconds": day.seconds,
            "seconds": appended_seconds,
            "share_of_full": round(share, 3),
            "rows_ingested": appended_stages["ingest"]["rows"],
            "peak_rss_mb": max((mb for _, mb in appended.rss_samples), default=None),
            "run_id": appended.detail["run_id"],
            "stages": {
                name: {"seconds": figures["seconds"], "peak_rss_mb": figures["peak_rss_mb"]}
                for name, figures in appended_stages.items()
            },
        },
        "baseline": baseline,
        "targets": {
            "pipeline_seconds_at_1m": {
                "value": full_seconds,
                "target": PIPELINE_SECONDS_AT_1M_TARGET,
                "met": full_seconds <= PIPELINE_SECONDS_AT_1M_TARGET
                if customers == TARGET_SIZE
                else None,
            },
            "orchestration_ratio": {
                "value": ratio,
                "target": ORCHESTRATION_RATIO_TARGET,
                "met": ratio <= ORCHESTRATION_RATIO_TARGET,
            },
            "appended_day_share_of_full": {
                "value": round(share, 3),
                "target": APPENDED_DAY_SHARE_TARGET,
                "met": share <= APPENDED_DAY_SHARE_TARGET,
            },
        },
    }


def _baseline(
    work: Path, customers: int, full: StageResult, stages: dict[str, dict[str, object]]
) -> dict[str, object]:
    target = work / "dbt" / "bare-target"
    dbt = shutil.which("dbt") or str(Path(sys.executable).with_name("dbt"))
    compile_command = [
        dbt,
        "compile",
        "--full-refresh",
        "--project-dir",
        str(_PROJECT_DIR),
        "--profiles-dir",
        str(_PROJECT_DIR),
        "--target-path",
        str(target),
        "--quiet",
    ]
    compiled = report_progress(
        customers,
        "dbt compile (baseline, untimed)",
        measure_command(compile_command, _env(work), False),
    )
    # The same file name, so the compiled "warehouse"."schema"."table" names resolve.
    copy = work / "bare" / "warehouse.duckdb"
    copy.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(work / "warehouse.duckdb", copy)
    wal = work / "warehouse.duckdb.wal"
    if wal.exists():
        shutil.copyfile(wal, copy.with_name("warehouse.duckdb.wal"))
    try:
        bare = report_progress(
            customers,
            "baseline (bare SQL)",
            _child(work, ["bare-sql", str(copy), str(target / "manifest.json")]),
        )
    finally:
        shutil.rmtree(copy.parent, ignore_errors=True)
    steps = {step["key"]: step for step in full.detail["steps"]}  # type: ignore[union-attr]
    dbt_seconds = sum(float(steps[key]["end"]) - float(steps[key]["start"]) for key in DBT_STEPS)
    bare_seconds = float(bare.detail["seconds"])  # type: ignore[arg-type]
    outside = float(stages["orchestration"]["seconds"])  # type: ignore[arg-type]
    without = pipeline_seconds(full) - dbt_seconds - outside + bare_seconds
    return {
        "seconds": round(bare_seconds, 2),
        "process_seconds": bare.seconds,
        "peak_rss_mb": bare.peak_rss_mb,
        "parts": bare.detail["parts"],
        "nodes": bare.detail["nodes"],
        "slowest": bare.detail["slowest"],
        "orchestrated_dbt_seconds": round(dbt_seconds, 2),
        "ratio": round(dbt_seconds / bare_seconds, 2),
        "compares": "the ops dbt_staging + dbt_marts + dbt_scored in the Dagster run (dbt "
        "build: seeds, models, snapshot, data and unit tests, with dbt's and Dagster's work "
        "around them) / the same seeds, models, snapshot and data tests as compiled SQL on a "
        "bare duckdb connection",
        "whole_run_ratio": round(pipeline_seconds(full) / without, 2),
        "compile_seconds_not_counted": compiled.seconds,
    }


def pipeline_seconds(run: StageResult) -> float:
    """The pipeline child's wall time less the bench's own reading of the run afterwards."""
    return round(run.seconds - float(run.detail["accounting_seconds"]), 2)  # type: ignore[arg-type]


def _with_rate(figures: dict[str, object]) -> dict[str, object]:
    rows, seconds = figures.get("rows"), float(figures["seconds"])  # type: ignore[arg-type]
    figures["rows_per_s"] = round(int(rows) / seconds) if rows is not None and seconds else None  # type: ignore[call-overload]
    return figures


def stage_of(step: dict[str, object]) -> str:
    """The stage an op of `crm_pipeline` belongs to."""
    key = str(step["key"])
    if key in NAMED_STEPS:
        return NAMED_STEPS[key]
    materialized = step.get("materialized") or []
    if any(address[0] == "raw" for address in materialized):  # type: ignore[union-attr]
        return "ingest"
    if not materialized and step.get("checked"):
        return "gate"
    return "other"


def pipeline_stages(run: StageResult) -> dict[str, dict[str, object]]:
    """Per stage: seconds, peak RSS (from the samples), rows and rows/s, the ops' seconds."""
    steps: list[dict[str, object]] = run.detail["steps"]  # type: ignore[assignment]
    table_rows: dict[str, int] = run.detail["table_rows"]  # type: ignore[assignment]
    stages: dict[str, dict[str, object]] = {}
    spans: list[tuple[float, float, str]] = []
    for step in steps:
        stage = stage_of(step)
        start, end = float(step["start"]), float(step["end"])  # type: ignore[arg-type]
        spans.append((start, end, stage))
        figures = stages.setdefault(
            stage, {"seconds": 0.0, "steps": {}, "materialized": set(), "checked": set()}
        )
        figures["seconds"] += end - start  # type: ignore[operator]
        figures["steps"][step["key"]] = round(end - start, 2)  # type: ignore[index]
        figures["materialized"].update(".".join(a) for a in step["materialized"])  # type: ignore[attr-defined, union-attr]
        figures["checked"].update(".".join(a) for a in step["checked"])  # type: ignore[attr-defined, union-attr]
        figures.setdefault("rows_in", 0)
        figures["rows_in"] += int(step.get("rows_in") or 0)  # type: ignore[operator, call-overload]
        figures["skipped"] = bool(figures.get("skipped")) or bool(step.get("skipped"))
        figures.setdefault("published_rows", 0)
        figures["published_rows"] += int(step.get("published_rows") or 0)  # type: ignore[operator, call-overload]
    stepped = sum(float(f["seconds"]) for f in stages.values())  # type: ignore[arg-type]
    detail = run.detail
    run_start, run_end = float(detail["run_start"]), float(detail["run_end"])  # type: ignore[arg-type]
    entered = float(detail["entered_at"])  # type: ignore[arg-type]
    total = pipeline_seconds(run)
    outside = max(total - stepped, 0.0)
    stages["orchestration"] = {
        "seconds": outside,
        "steps": {
            "definitions_and_dbt_parse": round(run_start - entered, 2),
            "between_steps": round(max(run_end - run_start - stepped, 0.0), 2),
            "interpreter_imports_and_exit": round(
                max(outside - (run_start - entered) - (run_end - run_start - stepped), 0.0), 2
            ),
        },
    }
    returned = float(detail["returned_at"])  # type: ignore[arg-type]
    samples = [(at, mb) for at, mb in run.rss_samples if at <= returned]
    peaks = attribute_samples(samples, spans)
    result: dict[str, dict[str, object]] = {}
    for name in [*STAGES, *sorted(set(stages) - set(STAGES))]:
        if name not in stages:
            continue
        figures = stages[name]
        if name == "ingest":
            rows: int | None = int(figures["rows_in"])  # type: ignore[call-overload]
        elif name == "publish":
            rows = int(figures["published_rows"])  # type: ignore[call-overload]
        elif name == "gate":
            rows = sum(table_rows.get(t, 0) for t in figures["checked"])  # type: ignore[union-attr]
        elif name == "orchestration":
            rows = None
        else:
            rows = sum(table_rows.get(t, 0) for t in figures["materialized"])  # type: ignore[union-attr]
        result[name] = _with_rate(
            {
                "seconds": round(float(figures["seconds"]), 2),  # type: ignore[arg-type]
                "peak_rss_mb": peaks.get(name),
                "rows": rows,
                "steps": figures["steps"],
            }
        )
        if figures.get("skipped"):
            result[name]["skipped"] = True
    return result


def attribute_samples(
    samples: list[tuple[float, float]], spans: list[tuple[float, float, str]]
) -> dict[str, float]:
    """The largest sample in each stage's steps; samples outside every step count for
    `orchestration`. A stage whose steps all ended between two samples gets the larger of
    the samples just before and just after them."""
    peaks: dict[str, float] = {}
    for at, mb in samples:
        stage = next((s for start, end, s in spans if start <= at <= end), "orchestration")
        peaks[stage] = max(peaks.get(stage, 0.0), mb)
    for start, end, stage in spans:
        if stage in peaks:
            continue
        before = [mb for at, mb in samples if at < start][-1:]
        after = [mb for at, mb in samples if at > end][:1]
        if before or after:
            peaks[f"~{stage}"] = max(peaks.get(f"~{stage}", 0.0), *before, *after)
    for nearby in [name for name in peaks if name.startswith("~")]:
        peaks[nearby[1:]] = peaks.pop(nearby)
    return peaks


def fit_line(sizes: list[float], seconds: list[float]) -> tuple[float, float] | None:
    """(intercept, slope) of seconds ≈ intercept + slope · customers by least squares; None
    without two distinct sizes."""
    if len(set(sizes)) < 2:
        return None
    slope, intercept = statistics.linear_regression(sizes, seconds)
    return intercept, slope


def fit_exponent(sizes: list[int], seconds: list[float]) -> float | None:
    """b in seconds ≈ a · customers^b, by least squares on the logs; None without two
    distinct sizes or with a time that is not positive."""
    if any(s <= 0 for s in seconds):
        return None
    line = fit_line([math.log(n) for n in sizes], [math.log(s) for s in seconds])
    return None if line is None else round(line[1], 3)


def appended_day_cost(runs: list[dict[str, object]]) -> dict[str, object] | None:
    """The appended day as a fixed part and a part per customer (`METHOD["appended_day_cost"]`).

    The fixed part bounds the appended-day share from below: however incremental the models,
    a day costs at least this, so its share of the full run cannot fall under
    fixed_share_of_full at that size."""
    sizes = [int(run["customers"]) for run in runs]  # type: ignore[call-overload]
    line = fit_line(sizes, [float(run["appended_day"]["seconds"]) for run in runs])  # type: ignore[index]
    if line is None:
        return None
    fixed, per_customer = line
    largest = max(runs, key=lambda run: int(run["customers"]))  # type: ignore[call-overload]
    full = float(largest["pipeline"]["seconds"])  # type: ignore[index]
    return {
        "sizes": sizes,
        "fixed_seconds": round(fixed, 1),
        "seconds_per_million_customers": round(per_customer * 1_000_000, 1),
        "largest_size": largest["customers"],
        "fixed_share_of_full": round(fixed / full, 3) if full > 0 else None,
    }


def exponents(runs: list[dict[str, object]]) -> dict[str, object]:
    sizes = [int(run["customers"]) for run in runs]  # type: ignore[call-overload]

    def of(values: list[float]) -> float | None:
        return fit_exponent(sizes, values)

    stage_names = [
        name
        for name in runs[0]["stages"]  # type: ignore[attr-defined]
        if all(name in run["stages"] for run in runs)  # type: ignore[operator]
    ]
    return {
        "sizes": sizes,
        "total": of([run["total"]["seconds"] for run in runs]),  # type: ignore[index]
        "pipeline": of([run["pipeline"]["seconds"] for run in runs]),  # type: ignore[index]
        "baseline": of([run["baseline"]["seconds"] for run in runs]),  # type: ignore[index]
        "appended_day": of([run["appended_day"]["seconds"] for run in runs]),  # type: ignore[index]
        "stages": {
            name: of([run["stages"][name]["seconds"] for run in runs])  # type: ignore[index]
            for name in stage_names
        },
    }


def verdict(runs: list[dict[str, object]], fitted: dict[str, object]) -> dict[str, object]:
    at_target = [run for run in runs if run["customers"] == TARGET_SIZE]
    sizes = [int(run["customers"]) for run in runs]  # type: ignore[call-overload]
    total = fitted["total"]
    return {
        "pipeline_at_1m_met": at_target[0]["targets"]["pipeline_seconds_at_1m"]["met"]  # type: ignore[index]
        if at_target
        else None,
        "orchestration_ratio_met": all(
            run["targets"]["orchestration_ratio"]["met"]  # type: ignore[index]
            for run in runs
        ),
        "appended_day_share_met": all(
            run["targets"]["appended_day_share_of_full"]["met"]  # type: ignore[index]
            for run in runs
        ),
        # Judged only over sizes a decade or more apart: below that, fixed costs and a
        # shared machine's noise make the exponent meaningless.
        "linear_growth_met": None
        if total is None or max(sizes) < 10 * min(sizes)
        else float(total) <= LINEAR_EXPONENT_MAX,  # type: ignore[arg-type]
    }


def render(document: dict[str, object]) -> str:
    lines = [
        f"dbt steps built on {document.get('target', 'duckdb')}",
        f"{'customers':>10} {'stage':<15} {'seconds':>9} {'peak MB':>9} {'rows':>12} "
        f"{'rows/s':>10} {'+1 day s':>9}",
    ]
    for run in document["runs"]:  # type: ignore[attr-defined]
        customers = run["customers"]
        day = run["appended_day"]
        for name, figures in run["stages"].items():
            day_seconds = (
                day["generate_seconds"] if name == "generate" else day["stages"].get(name, {})
            )
            if isinstance(day_seconds, dict):
                day_seconds = day_seconds.get("seconds")
            label = f"{name} (skipped)" if figures.get("skipped") else name
            lines.append(
                f"{customers:>10,} {label:<15} {figures['seconds']:>9.1f} "
                f"{_number(figures['peak_rss_mb'], '.0f'):>9} {_number(figures['rows'], ','):>12} "
                f"{_number(figures['rows_per_s'], ','):>10} {_number(day_seconds, '.1f'):>9}"
            )
        pipeline, baseline, total = run["pipeline"], run["baseline"], run["total"]
        lines.append(
            f"{customers:>10,} {'pipeline':<15} {pipeline['seconds']:>9.1f} "
            f"{_number(pipeline['peak_rss_mb'], '.0f'):>9} {'':>12} {'':>10} "
            f"{day['seconds']:>9.1f}"
        )
        lines.append(
            f"{customers:>10,}   total with generate {total['seconds']:.1f} s; appended day "
            f"{day['seconds']:.1f} s = {day['share_of_full']:.0%} of the full run; dbt in "
            f"Dagster {baseline['orchestrated_dbt_seconds']:.1f} s vs bare SQL "
            f"{baseline['seconds']:.1f} s = {baseline['ratio']:.2f}x (whole run "
            f"{baseline['whole_run_ratio']:.2f}x)"
        )
    fitted = document.get("exponents") or {}
    if fitted:
        stages = ", ".join(
            f"{name} {_number(value, '.2f', 'n/a')}"
            for name, value in fitted["stages"].items()  # type: ignore[index, union-attr]
        )
        lines.append(
            "growth exponent (seconds ~ customers^b): "
            f"total {_number(fitted['total'], '.2f', 'n/a')}, "  # type: ignore[index]
            f"pipeline {_number(fitted['pipeline'], '.2f', 'n/a')}, baseline "  # type: ignore[index]
            f"{_number(fitted['baseline'], '.2f', 'n/a')}, appended day "  # type: ignore[index]
            f"{_number(fitted['appended_day'], '.2f', 'n/a')}; {stages}"  # type: ignore[index]
        )
    cost = document.get("appended_day_cost")
    if cost:
        lines.append(
            f"appended day = {cost['fixed_seconds']:.1f} s fixed + "  # type: ignore[index]
            f"{cost['seconds_per_million_customers']:.1f} s per million customers; the fixed "  # type: ignore[index]
            f"part alone is {_number(cost['fixed_share_of_full'], '.0%', 'n/a')} of the full "  # type: ignore[index]
            f"run at {cost['largest_size']:,}"  # type: ignore[index]
        )
    judged = document.get("verdict") or {}
    if judged:
        lines.append(
            "targets: " + ", ".join(f"{name} {_met(value)}" for name, value in judged.items())  # type: ignore[union-attr]
        )
    return "\n".join(lines)


def _number(value: object, spec: str, missing: str = "") -> str:
    return missing if value is None else format(value, spec)


def _met(value: object) -> str:
    return "n/a" if value is None else ("met" if value else "MISSED")


# The child side: `python -m crm_warehouse.bench_stages WORK pipeline | bare-sql DB MANIFEST`.


def pipeline_facts(settings: Settings) -> dict[str, object]:
    """Run `crm_pipeline` as `crm run` does; return its ops' start and end times, what each
    materialised and checked, and the row counts of those tables afterwards."""
    import dagster as dg

    from orchestration.run import dagster_instance, run_pipeline

    entered = time.time()
    outcome = run_pipeline(settings)
    returned = time.time()
    if not outcome.success or outcome.failed_checks or outcome.skipped_steps:
        raise RuntimeError(
            f"pipeline run {outcome.run_id} failed: steps {outcome.failed_steps}, checks "
            f"{outcome.failed_checks}, not run {outcome.skipped_steps}"
        )
    steps: dict[str, dict[str, object]] = {}
    run_start = run_end = returned
    for record in dagster_instance(settings).all_logs(outcome.run_id):
        event = record.dagster_event
        if event is None:
            continue
        if event.event_type == dg.DagsterEventType.RUN_START:
            run_start = record.timestamp
        elif event.event_type == dg.DagsterEventType.RUN_SUCCESS:
            run_end = record.timestamp
        if event.step_key is None:
            continue
        if event.event_type == dg.DagsterEventType.STEP_START:
            steps[event.step_key] = {
                "key": event.step_key,
                "start": record.timestamp,
                "end": None,
                "materialized": [],
                "checked": [],
                "rows_in": 0,
                "published_rows": 0,
                "skipped": False,
            }
            continue
        step = steps.get(event.step_key)
        if step is None:
            continue
        if event.event_type in (dg.DagsterEventType.STEP_SUCCESS, dg.DagsterEventType.STEP_FAILURE):
            step["end"] = record.timestamp
        elif event.event_type == dg.DagsterEventType.ASSET_MATERIALIZATION:
            materialization = event.event_specific_data.materialization  # type: ignore[union-attr]
            address = list(materialization.asset_key.path)
            if address not in step["materialized"]:  # type: ignore[operator]
                step["materialized"].append(address)  # type: ignore[attr-defined]
            values = {k: v.value for k, v in materialization.metadata.items()}
            if "skipped" in values:
                step["skipped"] = True
            if "rows_in" in values:
                step["rows_in"] += int(values["rows_in"])  # type: ignore[operator]
            if isinstance(values.get("rows"), dict):
                step["published_rows"] += sum(int(n) for n in values["rows"].values())  # type: ignore[operator]
        elif event.event_type == dg.DagsterEventType.ASSET_CHECK_EVALUATION:
            address = list(event.event_specific_data.asset_key.path)  # type: ignore[union-attr]
            if address not in step["checked"]:  # type: ignore[operator]
                step["checked"].append(address)  # type: ignore[attr-defined]
    addresses = {
        tuple(address)
        for step in steps.values()
        for address in [*step["materialized"], *step["checked"]]  # type: ignore[misc]
        if len(address) == 2
    }
    table_rows: dict[str, int] = {}
    with settings.connect_warehouse() as conn:
        existing = set(
            conn.execute(
                "select table_schema, table_name from information_schema.tables"
            ).fetchall()
        )
        for schema, name in sorted(addresses & existing):
            (count,) = conn.execute(f'select count(*) from "{schema}"."{name}"').fetchone()  # type: ignore[misc]
            table_rows[f"{schema}.{name}"] = int(count)
    return {
        "run_id": outcome.run_id,
        "warned_checks": outcome.warned_checks,
        "steps": [step for step in steps.values() if step["end"] is not None],
        "table_rows": table_rows,
        "entered_at": entered,
        "run_start": run_start,
        "run_end": run_end,
        "returned_at": returned,
        # Reading the event log and counting rows: the bench's own work, not the pipeline's.
        "accounting_seconds": round(time.time() - returned, 3),
    }


def bare_sql(database: Path, manifest_path: Path) -> dict[str, object]:
    """dbt's compiled seeds, models, snapshot and data tests, in DAG order, on a bare duckdb
    connection to `database`; seconds per kind and the slowest nodes."""
    from crm_warehouse.dbt_text_plugin import Plugin

    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    nodes = {
        unique_id: node
        for unique_id, node in manifest["nodes"].items()
        if node["resource_type"] in ("seed", "model", "snapshot", "test")
        and node["config"].get("enabled", True)
    }
    order = _dag_order(nodes)
    parts = {"seeds": 0.0, "models": 0.0, "snapshots": 0.0, "tests": 0.0}
    counts = dict.fromkeys(parts, 0)
    timings: list[tuple[float, str]] = []
    # DuckDB's defaults, as dbt's profile leaves them; nfkc() as dbt's plugin registers it.
    with duckdb.connect(str(database)) as conn:
        Plugin("nfkc", {}).configure_connection(conn)
        started_all = time.perf_counter()
        for unique_id in order:
            node = nodes[unique_id]
            kind = node["resource_type"]
            # dbt makes each schema it builds in; a warehouse Spark built lacks DuckDB's own
            # (the snapshot's).
            conn.execute(f"create schema if not exists {quote_identifier(str(node['schema']))}")
            _drop_table_built_for_a_view(conn, node)
            started = time.perf_counter()
            conn.execute(_bare_statement(node))
            elapsed = time.perf_counter() - started
            part = f"{kind}s"
            parts[part] += elapsed
            counts[part] += 1
            timings.append((elapsed, unique_id))
        seconds = time.perf_counter() - started_all
    return {
        "seconds": round(seconds, 3),
        "parts": {name: round(value, 2) for name, value in parts.items()},
        "nodes": counts,
        "slowest": {name: round(s, 2) for s, name in sorted(timings, reverse=True)[:5]},
    }


def _dag_order(nodes: dict[str, dict[str, object]]) -> list[str]:
    """Builds before tests; each build after the builds it depends on."""
    builds = sorted(n for n, node in nodes.items() if node["resource_type"] != "test")
    within = set(builds)
    graph = {
        unique_id: [
            parent
            for parent in nodes[unique_id]["depends_on"].get("nodes", [])  # type: ignore[attr-defined]
            if parent in within
        ]
        for unique_id in builds
    }
    tests = sorted(n for n, node in nodes.items() if node["resource_type"] == "test")
    return [*TopologicalSorter(graph).static_order(), *tests]


def _drop_table_built_for_a_view(conn: duckdb.DuckDBPyConnection, node: dict[str, object]) -> None:
    """A warehouse whose models Spark built (`--target spark`) holds tables where DuckDB
    builds views (`view_materialization`); the view's bare SQL cannot replace a table."""
    config: dict[str, object] = node["config"]  # type: ignore[assignment]
    if config.get("materialized") != "view":
        return
    found = conn.execute(
        "select 1 from information_schema.tables where table_catalog = current_database() "
        "and table_schema = ? and table_name = ? and table_type = 'BASE TABLE'",
        [node["schema"], node.get("alias") or node["name"]],
    ).fetchall()
    if found:
        conn.execute(f"drop table {node['relation_name']}")


def _bare_statement(node: dict[str, object]) -> str:
    kind, relation = node["resource_type"], node.get("relation_name")
    config: dict[str, object] = node["config"]  # type: ignore[assignment]
    if kind == "seed":
        path = (_PROJECT_DIR / str(node["original_file_path"])).as_posix()
        types = config.get("column_types") or {}
        declared = ", ".join(f"'{column}': '{kind}'" for column, kind in types.items())  # type: ignore[union-attr]
        options = f", types = {{{declared}}}" if declared else ""
        return (
            f"create or replace table {relation} as "
            f"select * from read_csv('{path}', header = true{options})"
        )
    sql = str(node["compiled_code"])
    if kind == "test":
        return f"select count(*) from (\n{sql}\n) as dbt_internal_test"
    if kind == "snapshot":
        # Its first build, as dbt's timestamp strategy writes it.
        key, updated = config["unique_key"], config["updated_at"]
        sql = (
            f"select *, md5(coalesce(cast({key} as varchar), '') || '|' || "
            f"coalesce(cast({updated} as varchar), '')) as dbt_scd_id, "
            f"{updated} as dbt_updated_at, {updated} as dbt_valid_from, "
            f"cast(null as timestamp) as dbt_valid_to from (\n{sql}\n) as snapshot_query"
        )
    what = "view" if config.get("materialized") == "view" else "table"
    return f"create or replace {what} {relation} as (\n{sql}\n)"
