"""Which files and tables make up each source, as configured in `Settings`."""

from __future__ import annotations

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
