"""Ingest assets: each source into `raw.<table>`, bad rows into `quarantine.rejected_rows`."""

import dagster as dg
from dagster_duckdb import DuckDBResource

from crm_warehouse.erasure.blocklist import Blocklist
from crm_warehouse.ingest.batches import SourceCounts
from crm_warehouse.ingest.contracts import SALES_CONTRACTS
from crm_warehouse.ingest.files import load_file_sources
from crm_warehouse.ingest.sales import PULL_ORDER, pull_sales
from crm_warehouse.ingest.sources import file_sources
from crm_warehouse.settings import Settings
from orchestration.assets import sources


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
) -> dg.AssetsDefinition:
    @dg.asset(
        key=["raw", table],
        deps=[upstream.key, *extra_deps],
        group_name="ingest",
        kinds={"duckdb", "python"},
        description=description,
    )
    def load(
        warehouse: DuckDBResource, settings: dg.ResourceParam[Settings]
    ) -> dg.MaterializeResult:
        filesets = file_sources(settings)[source]
        with warehouse.get_connection() as conn:
            counts = load_file_sources(
                conn,
                filesets,
                settings.source_timezone,
                settings.scratch_dir,
                blocklist=Blocklist.load(settings),
            )
        return dg.MaterializeResult(metadata=_metadata(counts))

    return load


form_submissions = _file_asset(
    "forms",
    "form_submissions",
    sources.FORMS,
    "One row per form submission (JSON-lines and GBK CSV exports); new files or new tails "
    "only, by content hash.",
)
calls = _file_asset(
    "calls",
    "calls",
    sources.CALLCENTRE,
    "One row per call from the daily call detail record files.",
)
tickets = _file_asset(
    "tickets",
    "tickets",
    sources.CALLCENTRE,
    "One row per ticket version from the append-only ticket log.",
)
campaigns = _file_asset(
    "campaigns",
    "campaigns",
    sources.CAMPAIGNS,
    "One row per campaign per loaded version of the campaigns snapshot.",
)
campaign_touches = _file_asset(
    "campaign_touches",
    "campaign_touches",
    sources.CAMPAIGNS,
    "One row per campaign message sent; each must name a known campaign.",
    extra_deps=(dg.AssetKey(["raw", "campaigns"]),),
)


@dg.multi_asset(
    specs=[
        dg.AssetSpec(
            ["raw", SALES_CONTRACTS[table].table],
            deps=[sources.SALES_SYSTEM.key],
            group_name="ingest",
            kinds={"duckdb", "sqlalchemy"},
            description=SALES_CONTRACTS[table].description,
        )
        for table in PULL_ORDER
    ],
    name="sales_system_pull",
    # The sales system is a live OLTP database across a network: ride out a blip. Each table
    # is its own all-or-nothing batch and versions already loaded are skipped, so a retry
    # repeats nothing.
    retry_policy=dg.RetryPolicy(
        max_retries=3, delay=10, backoff=dg.Backoff.EXPONENTIAL, jitter=dg.Jitter.PLUS_MINUS
    ),
)
def sales_system_pull(warehouse: DuckDBResource, settings: dg.ResourceParam[Settings]):
    """The sales system's tables since their `updated_at` watermarks, upserted by id."""
    with warehouse.get_connection() as conn:
        results = pull_sales(
            conn,
            settings.sales_url,
            settings.sales_tables,
            settings.source_timezone,
            settings.sales_chunk_rows,
            blocklist=Blocklist.load(settings),
        )
    for table in PULL_ORDER:
        contract = SALES_CONTRACTS[table]
        yield dg.MaterializeResult(
            asset_key=["raw", contract.table], metadata=_metadata(results[contract.source])
        )


INGEST_ASSETS = [form_submissions, calls, tickets, campaigns, campaign_touches, sales_system_pull]
