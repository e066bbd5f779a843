"""The serving snapshot as the last asset: it runs only when the marts it copies were built
and their blocking checks passed, so a failed run leaves the last good snapshot live."""

import dagster as dg
import duckdb
from dagster_duckdb import DuckDBResource

from crm_warehouse.publish.serving import CONTRACT_VERSION, SERVING_TABLES, Published, publish
from crm_warehouse.settings import Settings
from orchestration.dbt_project import dbt_project

SERVING_SNAPSHOT = dg.AssetKey(["serving", "snapshot"])


def publish_configured(conn: duckdb.DuckDBPyConnection, settings: Settings) -> Published:
    """`publish` with what `Settings` configures and the dbt docs for the contract; the
    asset and `crm publish` both call this."""
    return publish(
        conn,
        settings.serving_dir,
        keep=settings.serving_keep,
        unmasked_group=settings.serving_unmasked_group,
        manifest_path=dbt_project(settings).manifest_path,
    )


@dg.asset(
    key=SERVING_SNAPSHOT,
    deps=[dg.AssetKey(table.source.split(".")) for table in SERVING_TABLES],
    group_name="publish",
    kinds={"duckdb"},
    description="The read-only DuckDB file apps and dashboards query (CRM_HOME/serving/"
    "serving.duckdb): the public marts with personal data masked, as versioned views "
    f"{CONTRACT_VERSION}_*, swapped in atomically; older snapshots kept for rollback.",
)
def serving_snapshot(
    context: dg.AssetExecutionContext,
    warehouse: DuckDBResource,
    settings: dg.ResourceParam[Settings],
) -> dg.MaterializeResult:
    with warehouse.get_connection() as conn:
        published = publish_configured(conn, settings)
    context.log.info("published %s (%s rows)", published.snapshot.name, published.rows)
    return dg.MaterializeResult(
        metadata={
            "snapshot": dg.MetadataValue.path(str(published.snapshot)),
            "unmasked_twin": str(published.unmasked) if published.unmasked else "not written",
            "rows": dg.MetadataValue.json(published.rows),
            "contract": dg.MetadataValue.path(str(settings.serving_dir / "contract.md")),
            "removed_snapshots": len(published.removed),
        }
    )


PUBLISH_ASSETS = [serving_snapshot]
