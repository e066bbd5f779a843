"""Identity resolution as an asset between the staging models and the marts."""

from collections.abc import Iterator

import dagster as dg
from dagster_duckdb import DuckDBResource

from crm_warehouse.identity.stable_ids import link_staged_records
from crm_warehouse.settings import Settings

RECORDS_INPUT = dg.AssetKey(["intermediate", "int_identity__records"])
IDENTITY_RECORDS = dg.AssetKey(["identity", "records"])
IDENTITY_CUSTOMERS = dg.AssetKey(["identity", "customers"])
IDENTITY_HISTORY = dg.AssetKey(["identity", "customer_id_history"])


class IdentityConfig(dg.Config):
    """`retrain`: fit the matching model again on all records and re-resolve everyone,
    keeping issued ids where the people are the same (`crm identity retrain`)."""

    retrain: bool = False


@dg.multi_asset(
    specs=[
        dg.AssetSpec(
            IDENTITY_RECORDS,
            deps=[RECORDS_INPUT],
            description="Every source record with its stable customer_id (Splink + exact rules).",
            kinds={"duckdb", "python"},
        ),
        dg.AssetSpec(
            IDENTITY_CUSTOMERS,
            deps=[RECORDS_INPUT],
            description="Every customer_id ever issued; merged_into names a merge's survivor.",
            kinds={"duckdb", "python"},
        ),
        dg.AssetSpec(
            IDENTITY_HISTORY,
            deps=[RECORDS_INPUT],
            description="Merges and splits of customer ids, with reason and time.",
            kinds={"duckdb", "python"},
        ),
    ],
    group_name="identity",
    name="identity_resolution",
)
def identity_resolution(
    context: dg.AssetExecutionContext,
    config: IdentityConfig,
    warehouse: DuckDBResource,
    settings: dg.ResourceParam[Settings],
) -> Iterator[dg.MaterializeResult]:
    """Link new and changed records to customers; the first run (or a retrain) trains the
    model, saves it under CRM_HOME/models/identity and resolves everyone."""
    with warehouse.get_connection() as conn:
        run = link_staged_records(conn, settings, retrain=config.retrain)
        customers, active = conn.execute(
            "select count(*), count(*) filter (where merged_into is null) from identity.customers"
        ).fetchall()[0]
        history = conn.execute("select count(*) from identity.customer_id_history").fetchall()[0][0]
    context.log.info(
        "identity run %s on %s: %s", run.run_id, settings.identity_engine, run.as_dict()
    )
    yield dg.MaterializeResult(
        asset_key=IDENTITY_RECORDS,
        metadata={
            **run.as_dict(),
            "splink_engine": settings.identity_engine,
            "model": dg.MetadataValue.path(str(settings.identity_model_dir)),
            "dagster/row_count": run.records_total,
        },
    )
    yield dg.MaterializeResult(
        asset_key=IDENTITY_CUSTOMERS,
        metadata={"active_customers": active, "dagster/row_count": customers},
    )
    yield dg.MaterializeResult(asset_key=IDENTITY_HISTORY, metadata={"dagster/row_count": history})


IDENTITY_ASSETS = [identity_resolution]
