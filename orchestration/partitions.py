"""Daily partitions of the event sources (calls, campaign touches, sales orders and their lines),
and the job that backfills them.

A partition is a local day in the sources' time zone. Its run loads that day's dated files, or
pulls that day's orders and lines, through the same ledger and the same upserts as any run: a
day loaded twice is loaded once, and every batch still balances (rows in = loaded + quarantined
+ erased). A run that names no partition (`crm_pipeline`, its schedule and sensor) loads
everything new, as before, and reports the days of the files it loaded as materialised.

A range of days (a backfill launched from the UI, or `dagster asset materialize
--partition-range`) runs as one run: the warehouse takes one writer at a time.
"""

from __future__ import annotations

from datetime import date, timedelta

import dagster as dg

# The partitioned assets, by warehouse address: the dated files and the orders.
EVENT_ASSET_KEYS = (
    dg.AssetKey(["raw", "calls"]),
    dg.AssetKey(["raw", "campaign_touches"]),
    dg.AssetKey(["raw", "sales_orders"]),
    dg.AssetKey(["raw", "sales_order_lines"]),
)
# What the event rows are checked against (a touch's campaign, an order's customer, a line's
# product): a backfill loads any new versions of these first, so a day's rows are not
# quarantined as naming something unknown just because nothing had loaded it yet.
REFERENCE_ASSET_KEYS = (
    dg.AssetKey(["raw", "campaigns"]),
    dg.AssetKey(["raw", "sales_customers"]),
    dg.AssetKey(["raw", "sales_products"]),
)


def event_partitions(timezone: str, start: str) -> dg.DailyPartitionsDefinition:
    """One partition per local day from `start` (`CRM_PARTITIONS_START`); the newest is
    yesterday, the last whole day. Days before `start` are still loaded by runs that name no
    day; they just have no partition to backfill."""
    return dg.DailyPartitionsDefinition(start_date=start, timezone=timezone)


def partition_days(context: dg.AssetExecutionContext) -> tuple[date, date] | None:
    """The first and last local day the run asks this asset for, or None if it names none."""
    if not (context.has_partition_key or context.has_partition_key_range):
        return None
    window = context.partition_time_window  # [start, end) at local midnights
    return window.start.date(), (window.end - timedelta(days=1)).date()


def day_keys(days: set[date], partitions: dg.DailyPartitionsDefinition) -> list[str]:
    """The partition keys of `days` that are partitions (not before the start, not today)."""
    keys = set(partitions.get_partition_keys())
    return sorted(key for key in (day.isoformat() for day in days) if key in keys)


crm_event_backfill = dg.define_asset_job(
    "crm_event_backfill",
    selection=dg.AssetSelection.assets(*REFERENCE_ASSET_KEYS, *EVENT_ASSET_KEYS),
    description="Load chosen days of the event sources (calls, campaign touches, sales "
    "orders and lines), after any new campaigns, customers and products they name. Launch a "
    "backfill of it, or of the assets, over a range of days: one run loads the whole range.",
    executor_def=dg.in_process_executor,
)
