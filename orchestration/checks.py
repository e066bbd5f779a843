"""Asset checks on raw: the ledger's promise (rows in = loaded + quarantined) verified
against what is actually in the warehouse."""

import dagster as dg
from dagster_duckdb import DuckDBResource

from crm_warehouse.ingest.contracts import ALL_CONTRACTS, SourceContract
from quality.reconciliation import reconcile_latest_batch


def _reconciliation_check(contract: SourceContract) -> dg.AssetChecksDefinition:
    @dg.asset_check(
        asset=dg.AssetKey(["raw", contract.table]),
        name="rows_reconcile",
        blocking=True,
        description="The latest batch's rows in equal its rows in raw plus its rows in "
        "quarantine; every batch ever recorded balances.",
    )
    def check(warehouse: DuckDBResource) -> dg.AssetCheckResult:
        with warehouse.get_connection() as conn:
            outcome = reconcile_latest_batch(conn, contract)
        return dg.AssetCheckResult(passed=outcome.passed, metadata=outcome.as_metadata())

    return check


RECONCILIATION_CHECKS = [_reconciliation_check(c) for c in ALL_CONTRACTS]
