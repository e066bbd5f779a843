"""Which files and tables make up each source, as configured in `Settings`."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import date
from pathlib import Path

from crm_warehouse.ingest.contracts import (
    CALLS,
    CAMPAIGN_TOUCHES,
    CAMPAIGNS,
    FORM_SUBMISSIONS,
    TICKETS,
)
from crm_warehouse.ingest.files import FileSet
from crm_warehouse.settings import Settings


def file_sources(settings: Settings) -> dict[str, list[FileSet]]:
    """The file sets of each file-based source, keyed by source name."""
    return {
        "forms": [
            FileSet(FORM_SUBMISSIONS, settings.forms_dir, "*.jsonl", "jsonl"),
            FileSet(
                FORM_SUBMISSIONS,
                settings.forms_dir,
                "*.csv",
                "csv",
                encoding=settings.forms_csv_encoding,
            ),
        ],
        "calls": [FileSet(CALLS, settings.callcentre_dir, "calls_*.csv", "csv")],
        "tickets": [FileSet(TICKETS, settings.callcentre_dir, "tickets*.jsonl", "jsonl")],
        "campaigns": [FileSet(CAMPAIGNS, settings.campaigns_dir, "campaigns*.csv", "csv")],
        "campaign_touches": [
            FileSet(CAMPAIGN_TOUCHES, settings.campaigns_dir, "touches_*.csv", "csv")
        ],
    }


# The file sources whose exports are dated: one file per local day, named for it
# (`calls_2026-11-01.csv`; `touches_2026-11-01.csv` holds the touches of the campaign that
# started, and sent them, that day). These are the ones with daily partitions.
DAILY_FILE_SOURCES = ("calls", "campaign_touches")

_DAY_IN_NAME = re.compile(r"_(\d{4}-\d{2}-\d{2})$")


def file_day(path: Path) -> date | None:
    """The local day a dated export's name states, or None for a file that names no day.

    A dated file is the unit the ledger loads, so its rows belong to its day as a whole, even
    a call queued just before midnight and exported the next morning.
    """
    found = _DAY_IN_NAME.search(path.stem)
    if found is None:
        return None
    try:
        return date.fromisoformat(found.group(1))
    except ValueError:  # `calls_2026-02-30.csv` names no day
        return None


def on_days(first: date, last: date) -> Callable[[Path], bool]:
    """Whether a file is a dated export of a day from `first` to `last`, both included."""

    def included(path: Path) -> bool:
        day = file_day(path)
        return day is not None and first <= day <= last

    return included
