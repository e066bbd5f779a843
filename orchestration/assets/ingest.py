"""Ingest assets: each source into `raw.<table>`, bad rows into `quarantine.rejected_rows`.

The event sources (calls, campaign touches, sales orders and lines) have daily partitions
(`orchestration.partitions`): `build_ingest_assets(partitions)` makes them with the one the
definitions use.
"""

from collections.abc import Iterator
from datetime import date
from pathlib import Path

import dagster as dg
import duckdb
from dagster_duckdb import DuckDBResource

from crm_warehouse.erasure.blocklist import Blocklist
from crm_warehouse.ingest.batches import SourceCounts
from crm_warehouse.ingest.contracts import SALES_CONTRACTS
from crm_warehouse.ingest.files import load_file_sources
from crm_warehouse.ingest.sales import DAILY_TABLES, PULL_ORDER, pull_sales, pull_sales_days
from crm_warehouse.ingest.sources import file_day, file_sources, on_days
from crm_warehouse.settings import Settings
from orchestration.assets import sources
from orchestration.partitions import day_keys, partition_days


def _metadata(counts: SourceCounts) -> dict[str, object]:
    by_reason = "\n".join(
        f"| {reason} | {number} |" for reason, number in sorted(counts.by_reason.items())
    )
    return {
        **{
            key: value
            for key, value in counts.as_metadata().items()
            if key != "quarantined_by_reason"
        },
        "quarantined_by_reason": dg.MetadataValue.md(
            "| reason | rows |\n|---|---|\n" + by_reason if by_reason else "nothing quarantined"
        ),
        "dagster/row_count": counts.rows_loaded,
    }


def _file_asset(
    source: str,
    table: str,
    upstream: dg.AssetSpec,
    description: str,
    extra_deps: tuple[dg.AssetKey, ...] = (),
    partitions: dg.DailyPartitionsDefinition | None = None,
) -> dg.AssetsDefinition:
    @dg.asset(
        key=["raw", table],
        deps=[upstream.key, *extra_deps],
        group_name="ingest",
        kinds={"duckdb", "python"},
        description=description,
        partitions_def=partitions,
        # A range of days is one run, one batch: the warehouse takes one writer at a time.
        backfill_policy=dg.BackfillPolicy.single_run() if partitions else None,
    )
    def load(
        context: dg.AssetExecutionContext,
        warehouse: DuckDBResource,
        settings: dg.ResourceParam[Settings],
    ) -> dg.MaterializeResult:
        days = partition_days(context) if partitions else None
        filesets = file_sources(settings)[source]
        with warehouse.get_connection() as conn:
            counts = load_file_sources(
                conn,
                filesets,
                settings.source_timezone,
                settings.scratch_dir,
                blocklist=Blocklist.load(settings),
                include=on_days(*days) if days else None,
            )
        if partitions and not days:
            _report_days(context, partitions, counts.files)
        return dg.MaterializeResult(metadata=_metadata(counts))

    return load


def _report_days(
    context: dg.AssetExecutionContext,
    partitions: dg.DailyPartitionsDefinition,
    files: list[str],
) -> None:
    """A run that named no day loaded whole days' files all the same: mark those days loaded,
    so the UI's partition view shows them and a backfill can skip them."""
    days = {day for file in files if (day := file_day(Path(file))) is not None}
    for key in day_keys(days, partitions):
        context.log_event(
            dg.AssetMaterialization(
                asset_key=context.asset_key,
                partition=key,
                description="loaded by a run that named no day",
            )
        )


# The sales system is a live OLTP database across a network: ride out a blip. Each table is its
# own all-or-nothing batch and versions already loaded are skipped, so a retry repeats nothing.
SALES_RETRY_POLICY = dg.RetryPolicy(
    max_retries=3, delay=10, backoff=dg.Backoff.EXPONENTIAL, jitter=dg.Jitter.PLUS_MINUS
)
# Customers and products are state, pulled by watermark; orders and their lines are events.
_STATE_TABLES = tuple(table for table in PULL_ORDER if table not in DAILY_TABLES)


def _sales_spec(table: str, *deps: dg.AssetKey) -> dg.AssetSpec:
    return dg.AssetSpec(
        ["raw", SALES_CONTRACTS[table].table],
        deps=[sources.SALES_SYSTEM.key, *deps],
        group_name="ingest",
        kinds={"duckdb", "sqlalchemy"},
        description=SALES_CONTRACTS[table].description,
    )


def _pull(
    conn: duckdb.DuckDBPyConnection,
    settings: Settings,
    tables: tuple[str, ...],
    days: tuple[date, date] | None = None,
) -> dict[str, SourceCounts]:
    """The sales `tables` since their watermarks, or, given `days`, the orders (and lines)
    of those days only (then `tables` must be the daily tables)."""
    source = (settings.sales_url, settings.sales_tables, settings.source_timezone)
    blocklist = Blocklist.load(settings)
    if days is not None:
        return pull_sales_days(conn, *source, *days, settings.sales_chunk_rows, blocklist=blocklist)
    return pull_sales(conn, *source, settings.sales_chunk_rows, blocklist=blocklist, only=tables)


def _sales_results(
    results: dict[str, SourceCounts], tables: tuple[str, ...]
) -> Iterator[dg.MaterializeResult]:
    for table in tables:
        contract = SALES_CONTRACTS[table]
        yield dg.MaterializeResult(
            asset_key=["raw", contract.table], metadata=_metadata(results[contract.source])
        )


@dg.multi_asset(
    specs=[_sales_spec(table) for table in _STATE_TABLES],
    name="sales_system_pull",
    retry_policy=SALES_RETRY_POLICY,
)
def sales_system_pull(
    warehouse: DuckDBResource, settings: dg.ResourceParam[Settings]
) -> Iterator[dg.MaterializeResult]:
    """The sales system's customers and products since their `updated_at` watermarks,
    upserted by id."""
    with warehouse.get_connection() as conn:
        results = _pull(conn, settings, _STATE_TABLES)
    yield from _sales_results(results, _STATE_TABLES)


def _sales_orders_pull(partitions: dg.DailyPartitionsDefinition) -> dg.AssetsDefinition:
    customers, products = (dg.AssetKey(["raw", SALES_CONTRACTS[t].table]) for t in _STATE_TABLES)
    orders = dg.AssetKey(["raw", SALES_CONTRACTS["orders"].table])

    @dg.multi_asset(
        specs=[_sales_spec("orders", customers), _sales_spec("order_lines", orders, products)],
        name="sales_orders_pull",
        partitions_def=partitions,
        backfill_policy=dg.BackfillPolicy.single_run(),
        retry_policy=SALES_RETRY_POLICY,
    )
    def pull(
        context: dg.AssetExecutionContext,
        warehouse: DuckDBResource,
        settings: dg.ResourceParam[Settings],
    ) -> Iterator[dg.MaterializeResult]:
        """The sales system's orders and their lines: those ordered on the run's days, or,
        in a run that names no day, everything since their `updated_at` watermarks; upserted
        by id either way."""
        with warehouse.get_connection() as conn:
            results = _pull(conn, settings, DAILY_TABLES, partition_days(context))
        yield from _sales_results(results, DAILY_TABLES)

    return pull


def build_ingest_assets(partitions: dg.DailyPartitionsDefinition) -> list[dg.AssetsDefinition]:
    """Every ingest asset, the event sources' with daily `partitions`."""
    return [
        _file_asset(
            "forms",
            "form_submissions",
            sources.FORMS,
            "One row per form submission (JSON-lines and GBK CSV exports); new files or new "
            "tails only, by content hash.",
        ),
        _file_asset(
            "calls",
            "calls",
            sources.CALLCENTRE,
            "One row per call from the daily call detail record files; a day's partition is "
            "its `calls_<day>.csv`.",
            partitions=partitions,
        ),
        _file_asset(
            "tickets",
            "tickets",
            sources.CALLCENTRE,
            "One row per ticket version from the append-only ticket log.",
        ),
        _file_asset(
            "campaigns",
            "campaigns",
            sources.CAMPAIGNS,
            "One row per campaign per loaded version of the campaigns snapshot.",
        ),
        _file_asset(
            "campaign_touches",
            "campaign_touches",
            sources.CAMPAIGNS,
            "One row per campaign message sent; each must name a known campaign. A day's "
            "partition is its `touches_<day>.csv`.",
            extra_deps=(dg.AssetKey(["raw", "campaigns"]),),
            partitions=partitions,
        ),
        sales_system_pull,
        _sales_orders_pull(partitions),
    ]
