"""The source systems, as external assets: Dagster shows them upstream of raw but does not
materialise them."""

from __future__ import annotations

import dagster as dg

FORMS = dg.AssetSpec(
    ["sources", "forms"],
    group_name="sources",
    kinds={"file"},
    description="Form tool exports: JSON-lines API dumps and GBK CSV exports (CRM_FORMS_DIR).",
)
CALLCENTRE = dg.AssetSpec(
    ["sources", "callcentre"],
    group_name="sources",
    kinds={"file"},
    description="Call-centre platform: daily call detail records and the ticket log "
    "(CRM_CALLCENTRE_DIR).",
)
SALES_SYSTEM = dg.AssetSpec(
    ["sources", "sales_system"],
    group_name="sources",
    kinds={"sqlite"},
    description="The sales system's OLTP database (CRM_SALES_URL, any SQLAlchemy URL).",
)
CAMPAIGNS = dg.AssetSpec(
    ["sources", "campaigns"],
    group_name="sources",
    kinds={"file"},
    description="Campaign definitions and touches (CRM_CAMPAIGNS_DIR).",
)

SOURCE_SPECS = [FORMS, CALLCENTRE, SALES_SYSTEM, CAMPAIGNS]
