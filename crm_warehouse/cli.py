"""The `crm` command line: generate demo sources, run the pipeline, inspect, benchmark."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from crm_warehouse.settings import Settings

UI_HINT = """Open the Dagster UI (lineage, runs, asset checks, metadata):
    crm ui
  or, by hand:
    DAGSTER_HOME={dagster_home} CRM_HOME={crm_home} dagster dev -m orchestration.definitions
  then browse http://127.0.0.1:3000
Open the dashboards (Apache Superset, on the serving snapshot):
    CRM_SUPERSET_ADMIN_PASSWORD=… crm superset up && crm dashboards deploy"""


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    return int(args.handler(args) or 0)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="crm",
        description="crm-warehouse: forms, call centre and sales into one trusted view. "
        "All state lives under CRM_HOME (default ./.crm).",
    )
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    generate = commands.add_parser(
        "generate", help="write deterministic demo sources (with ground truth) into CRM_HOME"
    )
    generate.add_argument("--customers", type=int, default=10_000)
    generate.add_argument("--days", type=int, default=90)
    generate.add_argument("--seed", type=int, default=42)
    generate.add_argument(
        "--append-day",
        action="store_true",
        help="add one more day of activity and sales-system updates to existing sources",
    )
    generate.add_argument(
        "--sales-copy-to",
        metavar="URL",
        help="also copy the demo sales system into this database (a SQLAlchemy URL, e.g. "
        "postgresql+psycopg2://crm@127.0.0.1/sales), as typed tables; point CRM_SALES_URL at it",
    )
    generate.set_defaults(handler=_generate)

    demo = commands.add_parser(
        "demo", help="generate demo sources into a fresh CRM_HOME and run everything end to end"
    )
    demo.add_argument("--customers", type=int, default=10_000)
    # Half a year: churn scoring trains on cutoffs two 30-day windows before the end.
    demo.add_argument("--days", type=int, default=180)
    demo.add_argument("--seed", type=int, default=42)
    demo.add_argument("--reset", action="store_true", help="delete everything under CRM_HOME first")
    demo.set_defaults(handler=_demo)

    run = commands.add_parser("run", help="materialise every asset (ingest, dbt build)")
    run.add_argument(
        "--full-refresh",
        action="store_true",
        help="rebuild dbt's incremental models from all their input",
    )
    run.set_defaults(handler=_run)

    identity = commands.add_parser("identity", help="the identity step: retrain, look up ids")
    identity_commands = identity.add_subparsers(required=True, metavar="ACTION")
    retrain = identity_commands.add_parser(
        "retrain",
        help="refit the matching model on all records, re-resolve everyone, rebuild the marts",
    )
    retrain.set_defaults(handler=_identity_retrain)
    lookup = identity_commands.add_parser(
        "lookup", help="the current customer_id of any id ever issued, and its history"
    )
    lookup.add_argument("customer_id")
    lookup.set_defaults(handler=_identity_lookup)

    score = commands.add_parser(
        "score",
        help="retrain and score churn and lifetime value now, rebuild the scored marts",
    )
    score.add_argument("--window-days", type=int, help="churn window (default 30)")
    score.add_argument("--horizon-days", type=int, help="lifetime-value horizon (default 365)")
    score.set_defaults(handler=_score)

    publish = commands.add_parser(
        "publish",
        help="write a new serving snapshot from the warehouse now, or roll back to the last",
    )
    publish.add_argument(
        "--rollback",
        action="store_true",
        help="point the serving path back at the snapshot before the current one",
    )
    publish.set_defaults(handler=_publish)

    erase = commands.add_parser(
        "erase",
        help="erase a person (个人信息删除) from everything under CRM_HOME and keep them out",
    )
    erase.add_argument("--customer-id", required=True, help="any id of theirs, current or merged")
    erase.add_argument(
        "--reference", help="the request's reference (a ticket number), kept in the audit log"
    )
    erase.set_defaults(handler=_erase)

    superset = commands.add_parser(
        "superset", help="a local Apache Superset for the dashboards (own venv, SQLite metadata)"
    )
    superset.add_argument(
        "action",
        choices=["up", "down"],
        help="up: install if needed, configure, create the admin, start; down: stop",
    )
    superset.set_defaults(handler=_superset)

    dashboards = commands.add_parser(
        "dashboards", help="the Superset dashboards as code: deploy them, screenshot them"
    )
    dashboards.add_argument(
        "action",
        choices=["deploy", "screenshot"],
        help="deploy: create or update every dashboard (idempotent); screenshot: PNG of each "
        "under CRM_HOME/reports/dashboards",
    )
    dashboards.set_defaults(handler=_dashboards)

    status = commands.add_parser("status", help="rows per layer and quarantine by reason")
    status.set_defaults(handler=_status)

    quarantine = commands.add_parser("quarantine", help="show quarantined rows and reasons")
    quarantine.add_argument("--source", help="only this source (e.g. forms, calls, sales_orders)")
    quarantine.add_argument("--limit", type=int, default=20)
    quarantine.set_defaults(handler=_quarantine)

    contracts = commands.add_parser(
        "contracts", help="print the source contracts (columns, types, checks) as Markdown"
    )
    contracts.set_defaults(handler=_contracts)

    ui = commands.add_parser("ui", help="start the Dagster UI on this CRM_HOME")
    ui.add_argument("--port", type=int, default=3000)
    ui.set_defaults(handler=_ui)

    bench = commands.add_parser(
        "bench",
        help="benchmark the stages at given population sizes; writes JSON under CRM_HOME/bench",
    )
    bench.add_argument(
        "--scale",
        action="store_true",
        help="the whole pipeline through Dagster and dbt, per stage, with the appended day and "
        "a plain-DuckDB-SQL baseline of the dbt models (default sizes 100000,1000000,3000000)",
    )
    bench.add_argument(
        "--customers",
        help="comma-separated population sizes (default 100000,1000000; with --scale "
        "100000,1000000,3000000)",
    )
    bench.add_argument("--days", type=int, default=90)
    bench.add_argument(
        "--target",
        choices=("duckdb", "spark"),
        default="duckdb",
        help="with --scale: the engine the pipeline's dbt steps build on (CRM_TARGET); "
        "spark needs `make spark-setup`",
    )
    bench.add_argument("--output", type=Path, help="JSON file to write (default under bench/)")
    bench.add_argument(
        "--keep-work",
        action="store_true",
        help="keep each size's generated sources and warehouse for inspection",
    )
    bench.set_defaults(handler=_bench)
    return parser


def _generate(args: argparse.Namespace) -> int:
    from crm_warehouse.generate import append_day, generate

    settings = Settings.from_env()
    started = time.perf_counter()
    if args.append_day:
        manifest = append_day(settings.sources_dir)
        print(f"appended {manifest.last_day}: {manifest.customers:,} people in the sources")
    else:
        manifest = generate(settings.sources_dir, args.customers, args.days, args.seed)
        print(
            f"generated {manifest.first_day} … {manifest.last_day} for "
            f"{manifest.customers:,} people into {settings.sources_dir}"
        )
    if args.sales_copy_to:
        from crm_warehouse.generate.sales_postgres import copy_sales_database

        copied = copy_sales_database(
            settings.sources_dir / "sales" / "sales.db", args.sales_copy_to
        )
        print("sales system copied: " + ", ".join(f"{t} {n:,}" for t, n in copied.items()))
    print(f"took {time.perf_counter() - started:.1f} s")
    return 0


def _demo(args: argparse.Namespace) -> int:
    from crm_warehouse.generate import generate

    settings = Settings.from_env()
    if args.reset and settings.crm_home.exists():
        shutil.rmtree(settings.crm_home)
    if settings.sources_dir.exists() and any(settings.sources_dir.iterdir()):
        print(
            f"{settings.crm_home} already holds sources. Run `crm run` to process them, or "
            "`crm demo --reset` to start again from nothing.",
            file=sys.stderr,
        )
        return 2
    started = time.perf_counter()
    print(f"CRM_HOME={settings.crm_home}")
    print(f"Generating demo sources for {args.customers:,} people over {args.days} days …")
    generate(settings.sources_dir, args.customers, args.days, args.seed)
    print(f"  done in {time.perf_counter() - started:.1f} s")
    outcome = _run_and_report(settings)
    print(f"Elapsed: {time.perf_counter() - started:.1f} s")
    report = settings.reports_dir / "scoring" / "latest.json"
    if report.exists():
        print(f"Scoring report: {json.loads(report.read_text(encoding='utf-8'))['report_html']}")
    print(
        f"Serving snapshot for apps: {settings.serving_dir / 'serving.duckdb'} "
        f"(contract: {settings.serving_dir / 'contract.md'})"
    )
    print(UI_HINT.format(dagster_home=settings.dagster_home, crm_home=settings.crm_home))
    return 0 if outcome else 1


def _run(args: argparse.Namespace) -> int:
    settings = Settings.from_env()
    started = time.perf_counter()
    ok = _run_and_report(settings, full_refresh=args.full_refresh)
    print(f"Elapsed: {time.perf_counter() - started:.1f} s")
    return 0 if ok else 1


def _run_and_report(
    settings: Settings, *, retrain_identity: bool = False, full_refresh: bool = False
) -> bool:
    from crm_warehouse.summary import summarise
    from orchestration.run import run_pipeline

    print("Materialising every asset (ingest, staging, identity, marts, scoring) …")
    started = time.perf_counter()
    outcome = run_pipeline(settings, retrain_identity=retrain_identity, full_refresh=full_refresh)
    state = (
        "FAILED" if not outcome.success else "INCOMPLETE" if outcome.skipped_steps else "succeeded"
    )
    print(f"  run {outcome.run_id} {state} in {time.perf_counter() - started:.1f} s")
    for step in outcome.failed_steps:
        print(f"  failed step: {step}")
    for check in outcome.failed_checks:
        print(f"  failed check: {check}")
    for check in outcome.warned_checks:
        print(f"  warning: {check} (see its metadata in the Dagster UI)")
    for step in outcome.skipped_steps:
        print(f"  not run: {step}")
    print(summarise(settings.warehouse_path).render())
    return outcome.success and not outcome.failed_checks and not outcome.skipped_steps


def _identity_retrain(args: argparse.Namespace) -> int:
    del args
    settings = Settings.from_env()
    started = time.perf_counter()
    ok = _run_and_report(settings, retrain_identity=True)
    print(f"Elapsed: {time.perf_counter() - started:.1f} s")
    return 0 if ok else 1


def _score(args: argparse.Namespace) -> int:
    from orchestration.run import run_pipeline

    settings = Settings.from_env()
    # Asked for by name, so the models are refitted now, whatever their age.
    config: dict[str, object] = {"refit_every_days": 0}
    if args.window_days:
        config["churn_window_days"] = args.window_days
    if args.horizon_days:
        config["clv_horizon_days"] = args.horizon_days
    started = time.perf_counter()
    outcome = run_pipeline(settings, "crm_scoring", scoring=config)
    for step in outcome.failed_steps:
        print(f"  failed step: {step}")
    latest = settings.reports_dir / "scoring" / "latest.json"
    if outcome.success and latest.exists():
        report = json.loads(latest.read_text(encoding="utf-8"))
        holdout = report["churn_holdout"]
        print(
            f"Churn: candidate {report['churn_candidate_version']} "
            f"{'promoted' if report['promoted'] else 'NOT promoted'} "
            f"({report['promotion_reason']}); scoring with {report['churn_live_version']}.\n"
            f"  holdout from {report['holdout_cutoff']}: ROC AUC {holdout['roc_auc']}, "
            f"PR AUC {holdout['pr_auc']}, Brier {holdout['brier']}; "
            f"risk bands {report['risk_bands']}\n"
            f"Lifetime value: BG/NBD {report['clv']['bg_nbd']}\n"
            f"Report: {report['report_html']}"
        )
    print(f"Elapsed: {time.perf_counter() - started:.1f} s")
    return 0 if outcome.success else 1


def _superset(args: argparse.Namespace) -> int:
    from dashboards.server import SupersetSettings, down, up

    superset = SupersetSettings.from_env(Settings.from_env())
    if args.action == "down":
        print("Superset stopped" if down(superset) else "Superset was not running")
        return 0
    up(superset)
    print(f"Superset: {superset.url} (user {superset.admin_user}); log: {superset.log_path}")
    return 0


def _dashboards(args: argparse.Namespace) -> int:
    from dashboards.deploy import deploy
    from dashboards.screenshots import take_screenshots
    from dashboards.server import SupersetSettings

    settings = Settings.from_env()
    superset = SupersetSettings.from_env(settings)
    if args.action == "deploy":
        deployed = deploy(superset, settings.serving_dir / "serving.duckdb")
        for slug, dashboard_id in deployed.dashboards.items():
            print(f"  {superset.url}/superset/dashboard/{slug}/  (id {dashboard_id})")
        print(f"Deployed {len(deployed.dashboards)} dashboards, {len(deployed.charts)} charts")
        return 0
    shots = take_screenshots(superset, settings.reports_dir / "dashboards")
    for shot in shots:
        state = "ok" if shot.rendered else f"NOT RENDERED {shot.errors}"
        print(f"  {shot.path}  {shot.charts} charts  {state}")
    return 0 if shots and all(shot.rendered for shot in shots) else 1


def _publish(args: argparse.Namespace) -> int:
    from crm_warehouse.publish.serving import rollback
    from orchestration.assets.publish import publish_configured

    settings = Settings.from_env()
    if args.rollback:
        target = rollback(settings.serving_dir)
        print(f"Serving {settings.serving_dir / 'serving.duckdb'} → {target.name}")
        return 0
    with settings.connect_warehouse() as conn:
        published = publish_configured(conn, settings)
    print(f"Published {published.snapshot.name}: {published.rows}")
    print(f"Contract: {settings.serving_dir / 'contract.md'}")
    return 0


def _erase(args: argparse.Namespace) -> int:
    from crm_warehouse.erasure.erase import AlreadyErased, audit_path, erase_customer
    from crm_warehouse.erasure.footprint import UnknownCustomer

    settings = Settings.from_env()
    try:
        report = erase_customer(settings, args.customer_id, reference=args.reference)
    except AlreadyErased as already:
        print(already)
        return 0
    except UnknownCustomer as unknown:
        print(unknown.args[0])
        return 1
    removed = sum(report.rows_removed.values()) + report.quarantined_rows_removed
    print(f"Erasure {report.erasure_id}: {removed:,} rows in {len(report.rows_removed)} tables")
    print(f"  files rewritten: {len(report.files_rewritten)}")
    print(f"  databases rewritten: {', '.join(report.databases_rewritten)}")
    print(f"  blocklist entries added: {report.blocklist_entries}")
    for outside in report.not_under_crm_home:
        print(f"  not under CRM_HOME, erase there too (ingest now drops them): {outside}")
    print(f"Audit record: {audit_path(settings)}")
    return 0


def _identity_lookup(args: argparse.Namespace) -> int:
    import duckdb

    from crm_warehouse.identity.lookup import follow

    settings = Settings.from_env()
    with duckdb.connect(str(settings.warehouse_path), read_only=True) as conn:
        trail = follow(conn, args.customer_id)
    if trail is None:
        print(f"{args.customer_id}: never issued")
        return 1
    for step in trail.steps:
        print(f"  {step}")
    print(f"{args.customer_id} → {trail.current_customer_id} ({trail.status})")
    return 0


def _status(args: argparse.Namespace) -> int:
    del args
    from crm_warehouse.summary import summarise

    settings = Settings.from_env()
    print(summarise(settings.warehouse_path).render())
    return 0


def _quarantine(args: argparse.Namespace) -> int:
    import duckdb

    settings = Settings.from_env()
    if not settings.warehouse_path.exists():
        print("no warehouse yet: run `crm run` first", file=sys.stderr)
        return 2
    where = "where source = $source" if args.source else ""
    with duckdb.connect(str(settings.warehouse_path), read_only=True) as conn:
        rows = conn.execute(
            f"select source, source_file, position, reason, left(raw_payload, 120) "
            f"from quarantine.rejected_rows {where} "
            f"order by quarantined_at desc, source, source_file, position limit $limit",
            {"limit": args.limit, **({"source": args.source} if args.source else {})},
        ).fetchall()
    for source, file, position, reason, payload in rows:
        print(f"{source}  {file}:{position}\n  reason:  {reason}\n  payload: {payload}")
    return 0


def _contracts(args: argparse.Namespace) -> int:
    del args
    from crm_warehouse.ingest.contract_docs import contracts_markdown

    print(contracts_markdown())
    return 0


def _ui(args: argparse.Namespace) -> int:
    from orchestration.run import dagster_instance

    settings = Settings.from_env()
    settings.ensure_dirs()
    dagster_instance(settings)  # writes the instance's dagster.yaml on first use
    env = {
        **os.environ,
        "DAGSTER_HOME": str(settings.dagster_home),
        "CRM_HOME": str(settings.crm_home),
    }
    dagster = shutil.which("dagster") or str(Path(sys.executable).with_name("dagster"))
    command = [dagster, "dev", "-m", "orchestration.definitions", "-p", str(args.port)]
    return subprocess.call(command, env=env)


def _bench(args: argparse.Namespace) -> int:
    from crm_warehouse.bench import run_bench
    from crm_warehouse.bench_scale import run_scale_bench

    settings = Settings.from_env()
    default = "100000,1000000,3000000" if args.scale else "100000,1000000"
    sizes = [int(size) for size in str(args.customers or default).split(",") if size.strip()]
    if args.scale:
        results = run_scale_bench(
            settings,
            sizes,
            days=args.days,
            output=args.output,
            keep_work=args.keep_work,
            target=args.target,
        )
    else:
        results = run_bench(
            settings, sizes, days=args.days, output=args.output, keep_work=args.keep_work
        )
    print(results.render())
    print(f"results: {results.path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
