"""Has a source stopped arriving? Each event source's newest event day, compared with the
newest day any source has reached.

Comparing sources with each other rather than with the clock keeps the check meaningful on
replayed or demo data, whose days lie in the past: when the call centre's files stop while
orders keep coming, the calls fall behind and are flagged.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import duckdb

# Each event source's raw table and the column that dates its events.
EVENT_DAYS = {
    "forms": ("raw.form_submissions", "submitted_at"),
    "calls": ("raw.calls", "queued_at"),
    "tickets": ("raw.tickets", "opened_at"),
    "campaign_touches": ("raw.campaign_touches", "sent_at"),
    "sales_orders": ("raw.sales_orders", "ordered_at"),
}
# Days between a source's deliveries when nothing is wrong: campaigns send weekly.
CADENCE_DAYS = {"campaign_touches": 7}


@dataclass(frozen=True)
class Freshness:
    source: str
    newest_day: date | None
    newest_overall: date | None
    max_lag_days: int

    @property
    def lag_days(self) -> int | None:
        if self.newest_day is None or self.newest_overall is None:
            return None
        return (self.newest_overall - self.newest_day).days

    @property
    def allowed_lag_days(self) -> int:
        """The configured lag, on top of the source's own cadence."""
        return self.max_lag_days + CADENCE_DAYS.get(self.source, 1) - 1

    @property
    def fresh(self) -> bool:
        lag = self.lag_days
        return lag is not None and lag <= self.allowed_lag_days


def source_freshness(conn: duckdb.DuckDBPyConnection, max_lag_days: int) -> list[Freshness]:
    existing = {
        f"{schema}.{name}"
        for schema, name in conn.execute(
            "select schema_name, table_name from duckdb_tables()"
        ).fetchall()
    }
    newest: dict[str, date | None] = {}
    for source, (table, column) in EVENT_DAYS.items():
        newest[source] = (
            conn.execute(f"select max({column})::date from {table}").fetchall()[0][0]
            if table in existing
            else None
        )
    days = [day for day in newest.values() if day is not None]
    overall = max(days) if days else None
    return [Freshness(source, day, overall, max_lag_days) for source, day in newest.items()]
