"""dbt models as assets: keys are warehouse addresses, so raw → staging lineage joins up."""

import shutil
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import dagster as dg
from dagster_dbt import DagsterDbtTranslator, DbtCliResource, DbtProject, dbt_assets
from dagster_duckdb import DuckDBResource

from crm_warehouse.settings import Settings
from crm_warehouse.target.exchange import source_tables_read
from crm_warehouse.target.postgres import pull_tables, push_tables
from crm_warehouse.target.spark import export_sources, mirror_built, registration_arguments


class WarehouseAddressTranslator(DagsterDbtTranslator):
    """`[schema, name]` for models and seeds, `[source, table]` for sources; the top folder
    (or `reference` for seeds) as group."""

    def get_asset_key(self, dbt_resource_props: Mapping[str, Any]) -> dg.AssetKey:
        if dbt_resource_props["resource_type"] == "source":
            return dg.AssetKey([dbt_resource_props["source_name"], dbt_resource_props["name"]])
        return dg.AssetKey([dbt_resource_props["schema"], dbt_resource_props["name"]])

    def get_group_name(self, dbt_resource_props: Mapping[str, Any]) -> str | None:
        if dbt_resource_props["resource_type"] == "seed":
            return "reference"
        fqn = dbt_resource_props.get("fqn", [])
        return fqn[1] if len(fqn) > 2 else None


class DbtBuildConfig(dg.Config):
    """`full_refresh`: rebuild incremental models from all their input (`crm run
    --full-refresh`), instead of processing only what arrived since the last run."""

    full_refresh: bool = False


# dbt's unit tests check a model's logic on fixed, hand-made inputs: the same answer on every
# run, so, as dbt advises, they run in development and CI (the test suite runs them on a
# real build), not on every production build; data tests still run on every build.
PRODUCTION_BUILD = ("build", "--exclude-resource-type", "unit_test")


def _build_args(config: DbtBuildConfig) -> list[str]:
    return [*PRODUCTION_BUILD, *(["--full-refresh"] if config.full_refresh else [])]


PARTIAL_PARSE_FILE = "partial_parse.msgpack"
# Each dbt invocation keeps its artefacts (run_results.json, compiled SQL, dbt.log) for
# reading after a run; the oldest go once there are more than this.
KEPT_INVOCATIONS = 30


def invocation_target_path(project_target: Path, step: str, run_id: str) -> Path:
    """A fresh target folder for one dbt invocation, inside the home's dbt target folder.

    dagster-dbt otherwise puts it under the dbt project's own `target/`, shared by every
    home, and seeds it with that folder's parse state; that state was parsed for another
    home's profile, so dbt threw it away and parsed the whole project again on every step.
    The home's own parse state (written when the manifest was prepared) is copied in instead,
    so a step parses only what changed, and the seeds, which dagster-dbt's preparer marks
    changed on purpose (they carry absolute paths).
    """
    invocations = project_target / "invocations"
    path = invocations / f"{step}-{run_id[:8]}"
    path.mkdir(parents=True, exist_ok=True)
    parse_state = project_target / PARTIAL_PARSE_FILE
    if parse_state.exists():
        shutil.copy2(parse_state, path / PARTIAL_PARSE_FILE)
    _prune_invocations(invocations, keep=KEPT_INVOCATIONS)
    return path


def keep_parse_state(invocation_path: Path, project_target: Path) -> None:
    """Make the parse state a dbt step left the home's, for the steps after it.

    The state the manifest was prepared with marks the seeds changed, so each step parsed
    them and the models reading them again (about 1.4 s); a step's own state is current.
    Replaced whole, so a reader never sees half a file.
    """
    state = invocation_path / PARTIAL_PARSE_FILE
    if not state.exists():
        return
    staged = project_target / f".{PARTIAL_PARSE_FILE}.{invocation_path.name}"
    shutil.copy2(state, staged)
    staged.replace(project_target / PARTIAL_PARSE_FILE)


def _prune_invocations(invocations: Path, keep: int) -> None:
    folders = sorted(
        (folder for folder in invocations.iterdir() if folder.is_dir()),
        key=lambda folder: folder.stat().st_mtime,
        reverse=True,
    )
    for stale in folders[keep:]:
        shutil.rmtree(stale, ignore_errors=True)


# Two Python assets cut the dbt project in three: identity resolution reads staging and
# writes the tables customer_id comes from; scoring reads the marts and writes schema ml.
# Models reading an asset's tables (and everything after them) run after that asset.
AFTER_IDENTITY = "source:identity+"
AFTER_SCORING = "source:ml+"
# Each part's dbt selection: seeds, staging and the identity input before the identity asset
# (`dbt_staging`); the models keyed on customer_id after it (`dbt_marts`); the models reading
# the scores after the scoring asset (`dbt_scored`).
DBT_PARTS: dict[str, dict[str, str]] = {
    "dbt_staging": {"exclude": f"{AFTER_IDENTITY} {AFTER_SCORING}"},
    "dbt_marts": {"select": AFTER_IDENTITY, "exclude": AFTER_SCORING},
    "dbt_scored": {"select": AFTER_SCORING},
}
DBT_BUILD_STEPS = tuple(DBT_PARTS)


def dbt_cli_selection(part: str) -> list[str]:
    """The same part as `dbt build` arguments, for runs outside Dagster (bench, tests)."""
    return [
        argument
        for option, selectors in DBT_PARTS[part].items()
        for argument in (f"--{option}", *selectors.split())
    ]


def build_dbt_assets(project: DbtProject) -> list[dg.AssetsDefinition]:
    """The three parts of one `dbt build` (`DBT_PARTS`) as three multi-assets."""
    return [_dbt_build_assets(project, name, **selection) for name, selection in DBT_PARTS.items()]


def _dbt_build_assets(project: DbtProject, name: str, **selection: str) -> dg.AssetsDefinition:
    @dbt_assets(
        manifest=project.manifest_path,
        project=project,
        dagster_dbt_translator=WarehouseAddressTranslator(),
        name=name,
        **selection,
    )
    def build(
        context: dg.AssetExecutionContext,
        config: DbtBuildConfig,
        dbt: DbtCliResource,
        warehouse: DuckDBResource,
        settings: dg.ResourceParam[Settings],
    ) -> Iterator[Any]:
        target_path = invocation_target_path(
            project.target_path, context.op_execution_context.op.name, context.run.run_id
        )
        if settings.target == "duckdb":
            yield from dbt.cli(
                _build_args(config), context=context, target_path=target_path
            ).stream()
            keep_parse_state(target_path, project.target_path)
            return
        if settings.target == "spark":
            yield from _build_on_spark(
                context, config, dbt, warehouse, settings, project.manifest_path, target_path
            )
            keep_parse_state(target_path, project.target_path)
            return
        # On PostgreSQL: the sources this part reads go in, what it built comes back to the
        # working store, where identity, scoring, the gate and publishing read it.
        built = sorted((key.path[0], key.path[1]) for key in context.selected_asset_keys)
        with warehouse.get_connection() as conn:
            pushed = push_tables(
                conn,
                settings.postgres,
                source_tables_read(project.manifest_path, built),
                settings.scratch_dir,
            )
        context.log.info(f"pushed to PostgreSQL: {_describe(pushed)}")
        yield from dbt.cli(_build_args(config), context=context, target_path=target_path).stream()
        keep_parse_state(target_path, project.target_path)
        with warehouse.get_connection() as conn:
            pulled = pull_tables(settings.postgres, conn, built, settings.scratch_dir)
        context.log.info(f"mirrored from PostgreSQL: {_describe(pulled)}")

    return build


def _build_on_spark(
    context: dg.AssetExecutionContext,
    config: DbtBuildConfig,
    dbt: DbtCliResource,
    warehouse: DuckDBResource,
    settings: Settings,
    manifest: Path,
    target_path: Path,
) -> Iterator[Any]:
    """One part on Spark: the sources it reads go out as Parquet and are registered in
    Spark's catalog, dbt builds on Spark, and what it built comes back to the working store
    (crm_warehouse.target.spark), where identity, scoring, the gate and publishing read it."""
    built = sorted((key.path[0], key.path[1]) for key in context.selected_asset_keys)
    with warehouse.get_connection() as conn:
        locations = export_sources(conn, manifest, built, settings.crm_home)
    if locations:
        dbt.cli(registration_arguments(locations), target_path=target_path / "register").wait()
        context.log.info(f"registered in Spark: {', '.join(locations)}")
    yield from dbt.cli(_build_args(config), context=context, target_path=target_path).stream()
    with warehouse.get_connection() as conn:
        mirrored = mirror_built(conn, settings.crm_home, manifest, built)
    context.log.info(f"mirrored from Spark: {_describe(mirrored)}")


def _describe(rows_by_table: Mapping[tuple[str, str], int]) -> str:
    return ", ".join(
        f"{schema}.{table} {rows:,}" for (schema, table), rows in rows_by_table.items()
    )
