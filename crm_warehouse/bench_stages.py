"""One benchmark stage per process (`python -m crm_warehouse.bench_stages WORK STAGE …`).

Prints its figures as one JSON line on stdout; `crm_warehouse.bench` reads it and the child's
rusage. Not a user command: `crm bench` is.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import duckdb

from crm_warehouse.erasure.blocklist import Blocklist
from crm_warehouse.generate import generate
from crm_warehouse.ingest.files import FileSet
from crm_warehouse.ingest.runner import FILE_SOURCE_ORDER
from crm_warehouse.ingest.sales import pull_sales
from crm_warehouse.ingest.sources import file_sources
from crm_warehouse.settings import Settings


def _generate(settings: Settings, customers: int, days: int) -> dict[str, object]:
    manifest = generate(settings.sources_dir, customers, days)
    return {
        "people": manifest.customers,
        "orders": manifest.counters.order - 1,
        "calls": manifest.counters.call - 1,
    }


def _ingest(settings: Settings, files_only_into: Path | None = None) -> dict[str, object]:
    """All sources into the warehouse; or, for repeat timings, only the file sources into a
    fresh database file `files_only_into`."""
    filesets = file_sources(settings)
    from crm_warehouse.ingest.files import load_file_sources

    figures: dict[str, dict[str, object]] = {}
    if files_only_into is not None:
        files_only_into.unlink(missing_ok=True)
        conn = duckdb.connect(str(files_only_into), config=settings.duckdb_config())
    else:
        conn = settings.connect_warehouse()
    with conn:
        for source in FILE_SOURCE_ORDER:
            started = time.perf_counter()
            counts = load_file_sources(
                conn,
                filesets[source],
                settings.source_timezone,
                settings.scratch_dir,
                blocklist=Blocklist.load(settings),
            )
            figures[source] = {
                "rows_in": counts.rows_in,
                "rows_loaded": counts.rows_loaded,
                "rows_quarantined": counts.rows_quarantined,
                "files": len(counts.files),
                "seconds": round(time.perf_counter() - started, 3),
            }
        if files_only_into is not None:
            return {"sources": figures}
        started = time.perf_counter()
        sales = pull_sales(
            conn,
            settings.sales_url,
            settings.sales_tables,
            settings.source_timezone,
            settings.sales_chunk_rows,
            blocklist=Blocklist.load(settings),
        )
        elapsed = round(time.perf_counter() - started, 3)
        figures["sales_system"] = {
            "rows_in": sum(c.rows_in for c in sales.values()),
            "rows_loaded": sum(c.rows_loaded for c in sales.values()),
            "rows_quarantined": sum(c.rows_quarantined for c in sales.values()),
            "tables": {name: c.rows_in for name, c in sales.items()},
            "seconds": elapsed,
        }
    return {"sources": figures}


def _bare(settings: Settings) -> dict[str, object]:
    """DuckDB's own readers over the same files, materialised, with no checks at all."""
    timings: dict[str, object] = {}
    # Into a database file, as ingest does: a load that does not persist is not a load.
    baseline = settings.scratch_dir / "bare-readers.duckdb"
    baseline.unlink(missing_ok=True)
    # DuckDB's defaults: its JSON reader needs more than ingest's memory limit to sniff.
    with duckdb.connect(str(baseline)) as conn:
        for source in FILE_SOURCE_ORDER:
            started = time.perf_counter()
            for number, fileset in enumerate(file_sources(settings)[source]):
                _bare_read(conn, fileset, settings.scratch_dir, f"{source}_{number}")
            timings[source] = round(time.perf_counter() - started, 3)
    timings["note"] = (
        "read_csv (declared VARCHAR columns) / read_json(newline_delimited, ignore_errors) "
        "into a table of a DuckDB file; "
        "DuckDB has no GBK decoder offline, so for GBK exports the bare figure includes "
        "Python's decode to UTF-8 first"
    )
    return timings


def _bare_read(
    conn: duckdb.DuckDBPyConnection, fileset: FileSet, scratch: Path, table: str
) -> None:
    paths = sorted(fileset.directory.glob(fileset.pattern))
    if not paths:
        return
    if fileset.format == "jsonl":
        listed = [p.as_posix() for p in paths]
        conn.execute(
            f"create table {table} as select * from read_json(?, "
            "format = 'newline_delimited', ignore_errors = true)",
            [listed],
        )
        return
    if fileset.encoding.lower() not in ("utf-8", "utf8"):
        scratch.mkdir(parents=True, exist_ok=True)
        decoded = []
        for path in paths:
            copy = scratch / f"bare-{path.name}"
            copy.write_text(
                path.read_bytes().decode(fileset.encoding, errors="replace"), encoding="utf-8"
            )
            decoded.append(copy)
        paths = decoded
    listed = [p.as_posix() for p in paths]
    with paths[0].open("rb") as first:
        header = first.readline().decode("utf-8-sig", errors="replace")
    columns = {f"column_{i}": "VARCHAR" for i, _ in enumerate(header.split(","))}
    # The same reader settings as ingest: a declared layout, no sniffing.
    conn.execute(
        f"create table {table} as select * from read_csv(?, header = true, "
        "auto_detect = false, delim = ',', quote = '\"', escape = '\"', "
        "columns = ?, ignore_errors = true)",
        [listed, columns],
    )


def _identity(settings: Settings) -> dict[str, object]:
    """Link the staged records (all of them on the first call, the new ones after), then
    score the links against the ground truth and the ids against the previous call's."""
    from crm_warehouse.identity.evaluate import id_stability, link_quality, snapshot_ids
    from crm_warehouse.identity.stable_ids import link_staged_records

    snapshot = settings.scratch_dir / "identity-ids.json"
    with settings.connect_warehouse() as conn:
        # What the identity asset does: read the staged records, link them.
        started = time.perf_counter()
        run = link_staged_records(conn, settings)
        seconds = round(time.perf_counter() - started, 2)
        quality = link_quality(conn, settings.truth_dir).as_dict()
        stability = (
            id_stability(json.loads(snapshot.read_text()), conn) if snapshot.exists() else None
        )
        snapshot.write_text(json.dumps(snapshot_ids(conn)))
    return {
        "seconds_linking": seconds,
        "run": run.as_dict(),
        "quality": quality,
        "id_stability": stability,
    }


def _scoring(settings: Settings) -> dict[str, object]:
    """What the scoring asset does (train, judge, score, fit lifetime value, write), timed
    by step, with how well the churn scores rank the planted churners."""
    from crm_warehouse.alert_quality import planted_churn_auc
    from ml.scoring import memory_limit, score, write_scores

    with settings.connect_warehouse() as conn, memory_limit(conn, settings.scoring_memory_limit):
        started = time.perf_counter()
        run, frames = score(conn, settings.models_dir)
        write_scores(conn, run, frames)
        seconds = round(time.perf_counter() - started, 2)
        scores = frames["churn_scores"]
        planted = planted_churn_auc(
            conn,
            settings.truth_dir,
            list(zip(scores["customer_id"], scores["churn_probability"], strict=True)),
            run.timeline.as_of,
        )
    summary = run.summary()
    return {
        "seconds_total": seconds,
        "seconds_by_step": run.seconds,
        "scored_customers": run.scored_customers,
        "churn_holdout": {k: v for k, v in run.candidate_metrics.items() if k != "calibration"},
        "planted_churners": planted,
        "clv_holdout_mean_absolute_error": summary["clv"]["holdout"]["mean_absolute_error"],
        "training_cutoffs": summary["training_cutoffs"],
    }


def _alerts(settings: Settings) -> dict[str, object]:
    from crm_warehouse.alert_quality import alert_quality

    with duckdb.connect(str(settings.warehouse_path), read_only=True) as conn:
        return dict(alert_quality(conn, settings.truth_dir))


def _append_day(settings: Settings) -> dict[str, object]:
    from crm_warehouse.generate import append_day

    manifest = append_day(settings.sources_dir)
    return {"last_day": manifest.window.last.isoformat()}


def main(argv: list[str]) -> int:
    work, stage, *rest = argv
    settings = Settings.from_env({"CRM_HOME": work})
    settings.ensure_dirs()
    if stage == "generate":
        result = _generate(settings, int(rest[0]), int(rest[1]))
    elif stage == "ingest":
        result = _ingest(settings)
    elif stage == "ingest-files":
        result = _ingest(settings, files_only_into=settings.scratch_dir / "repeat.duckdb")
    elif stage == "bare":
        result = _bare(settings)
    elif stage == "identity":
        result = _identity(settings)
    elif stage == "scoring":
        result = _scoring(settings)
    elif stage == "alerts":
        result = _alerts(settings)
    elif stage == "append-day":
        result = _append_day(settings)
    elif stage == "pipeline":
        from crm_warehouse.bench_scale import pipeline_facts

        # The whole environment (CRM_DUCKDB_MEMORY_LIMIT, …), as `crm run` would see it.
        result = pipeline_facts(Settings.from_env({**os.environ, "CRM_HOME": work}))
    elif stage == "bare-sql":
        from crm_warehouse.bench_scale import bare_sql

        result = bare_sql(Path(rest[0]), Path(rest[1]))
    else:
        raise SystemExit(f"unknown stage {stage}")
    sys.stdout.write(json.dumps(result, ensure_ascii=False) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
