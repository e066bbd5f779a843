"""Every source in dependency order, outside Dagster: for tests, benchmarks and scripts."""

from __future__ import annotations

import duckdb

from crm_warehouse.erasure.blocklist import Blocklist
from crm_warehouse.ingest.batches import SourceCounts
from crm_warehouse.ingest.files import load_file_sources
from crm_warehouse.ingest.sales import pull_sales
from crm_warehouse.ingest.sources import file_sources
from crm_warehouse.settings import Settings

# Campaigns before their touches, which must name a known campaign.
FILE_SOURCE_ORDER = ("forms", "calls", "tickets", "campaigns", "campaign_touches")


def ingest_all(conn: duckdb.DuckDBPyConnection, settings: Settings) -> dict[str, SourceCounts]:
    """Load every file source, then pull the sales system; returns counts per source."""
    filesets = file_sources(settings)
    blocklist = Blocklist.load(settings)
    counts = {
        source: load_file_sources(
            conn,
            filesets[source],
            settings.source_timezone,
            settings.scratch_dir,
            blocklist=blocklist,
        )
        for source in FILE_SOURCE_ORDER
    }
    counts.update(
        pull_sales(
            conn,
            settings.sales_url,
            settings.sales_tables,
            settings.source_timezone,
            settings.sales_chunk_rows,
            blocklist=blocklist,
        )
    )
    return counts
