"""Asset checks. On raw: the ledger's promise (rows in = loaded + quarantined + erased)
verified against what is actually in the warehouse. On raw, staging and the published marts:
the great-expectations gate (quality/gate.py), whose blocking half stops everything downstream,
the serving snapshot included."""

from collections.abc import Iterator

import dagster as dg
from dagster_duckdb import DuckDBResource

from crm_warehouse.ingest.contracts import ALL_CONTRACTS, SourceContract
from crm_warehouse.settings import Settings
from orchestration.dbt_project import dbt_project
from quality.gate import (
    GATES,
    TableGate,
    data_docs_index,
    expected_columns,
    model_definition,
    validate,
)
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


def _gate_check(gate: TableGate) -> dg.AssetChecksDefinition:
    asset = dg.AssetKey(gate.table.split("."))

    @dg.multi_asset_check(
        specs=[
            dg.AssetCheckSpec(
                "gx_blocking",
                asset=asset,
                blocking=True,
                description="The blocking expectations of the great-expectations suite: a "
                "failure stops everything downstream, the serving snapshot included.",
            ),
            dg.AssetCheckSpec(
                "gx_warnings",
                asset=asset,
                description="The warning expectations of the suite: shown, never stopping.",
            ),
        ],
        name=f"gate__{gate.table.replace('.', '__')}",
    )
    def check(
        warehouse: DuckDBResource, settings: dg.ResourceParam[Settings]
    ) -> Iterator[dg.AssetCheckResult]:
        with warehouse.get_connection() as conn:
            manifest = dbt_project(settings).manifest_path
            outcome = validate(
                conn,
                gate,
                settings.reports_dir,
                columns=expected_columns(gate.table, manifest),
                definition=model_definition(gate.table, manifest),
            )
        docs = dg.MetadataValue.path(str(data_docs_index(settings.reports_dir)))
        blocking = [f for f in outcome.failures if f["blocking"]]
        warnings = [f for f in outcome.failures if not f["blocking"]]
        yield dg.AssetCheckResult(
            asset_key=asset,
            check_name="gx_blocking",
            passed=outcome.blocking_passed,
            metadata={
                "row_count": outcome.row_count,
                # A table that grows by loads: after a good run, only the rows loaded since.
                "rows_checked": outcome.rows_checked,
                "failed": dg.MetadataValue.json(blocking),
                "data_docs": docs,
            },
        )
        yield dg.AssetCheckResult(
            asset_key=asset,
            check_name="gx_warnings",
            passed=outcome.warnings_passed,
            severity=dg.AssetCheckSeverity.WARN,
            metadata={"failed": dg.MetadataValue.json(warnings), "data_docs": docs},
        )

    return check


GATE_CHECKS = [_gate_check(gate) for gate in GATES]
