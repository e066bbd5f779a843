"""Tables between the embedded DuckDB working store and Apache Spark (`CRM_TARGET=spark`).

dbt-spark builds the models in a Spark session (the `spark` output of
`dbt_project/profiles.yml`) whose tables are Parquet folders under `CRM_HOME/spark/warehouse`.
The steps written in Python keep reading and writing DuckDB, so, as on PostgreSQL, the sources
a build reads go out first and what it built comes back:

- out: DuckDB writes each source table as Parquet under `CRM_HOME/spark/sources/<schema>/
  <table>/`, and `dbt run-operation register_spark_sources` registers each folder in Spark's
  catalog as an external table of the same name, so `source('raw', 'calls')` reads it;
- back: DuckDB reads the Parquet Spark wrote for each built table.

Parquet is the one exchange format both engines read and write natively, with types: no
rows pass through Python.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import duckdb

from crm_warehouse.ingest.validation import literal, quote_identifier
from crm_warehouse.target.exchange import BUILT_RESOURCE_TYPES, source_tables_read
from crm_warehouse.target.postgres import Table

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

# A history model's copy of its earlier rows for the length of a run on Spark (the dbt
# macro `earlier_rows`), which Spark needs because it will not overwrite a table it reads.
EARLIER_ROWS_SUFFIX = "__earlier"


class SparkBuildError(RuntimeError):
    """dbt on Spark failed; the message carries dbt's own output."""


@contextmanager
def local_spark_session(app_name: str, work_dir: Path) -> Iterator[SparkSession]:
    """A Spark session in this process, from the same CRM_SPARK_* settings as dbt's (master,
    driver memory, shuffle partitions), its scratch and checkpoints in a folder of its own
    under `work_dir`, removed afterwards. It uses Spark's in-memory catalog, never the
    Derby catalog dbt's sessions hold. Python workers run this interpreter, so they import
    what the driver does."""
    from pyspark.sql import SparkSession

    # A folder of this session's own: another session's clean-up (a second process, a test
    # beside this one) must never empty the checkpoints this one still reads.
    work_dir.mkdir(parents=True, exist_ok=True)
    own = Path(tempfile.mkdtemp(prefix="session-", dir=work_dir))
    checkpoints = own / "checkpoints"
    checkpoints.mkdir()
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    spark = (
        SparkSession.builder.appName(app_name)
        .master(os.environ.get("CRM_SPARK_MASTER", "local[2]"))
        .config("spark.driver.memory", os.environ.get("CRM_SPARK_DRIVER_MEMORY", "2g"))
        .config("spark.sql.shuffle.partitions", os.environ.get("CRM_SPARK_SHUFFLE_PARTITIONS", "4"))
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.local.dir", str(own / "local"))
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.log.level", "ERROR")
        .getOrCreate()
    )
    spark.sparkContext.setCheckpointDir(str(checkpoints))
    try:
        yield spark
    finally:
        spark.stop()
        _stop_jvm()
        shutil.rmtree(own, ignore_errors=True)


def _stop_jvm() -> None:
    """End the JVM pyspark started for this process. `stop()` ends the session but leaves
    the JVM running, with the heap it grew: in a 1M-customer pipeline run (Dagster's
    in-process executor) scoring's JVM kept 4 GB resident through the steps after it. The
    JVM exits when its standard input closes; the next session starts a fresh one."""
    from pyspark import SparkContext

    gateway = SparkContext._gateway
    if gateway is None:
        return
    process = getattr(gateway, "proc", None)
    gateway.shutdown()
    if process is not None and process.stdin is not None:
        process.stdin.close()
        process.wait(timeout=120)
    SparkContext._gateway = None
    SparkContext._jvm = None


def spark_home(crm_home: Path) -> Path:
    """Spark's state under a home: its catalog (Derby), warehouse and exported sources."""
    return crm_home / "spark"


def sources_folder(crm_home: Path) -> Path:
    return spark_home(crm_home) / "sources"


def warehouse_folder(crm_home: Path) -> Path:
    """Where Spark keeps its managed tables: `spark.sql.warehouse.dir` in the profile."""
    return spark_home(crm_home) / "warehouse"


def export_table(duckdb_conn: duckdb.DuckDBPyConnection, table: Table, target: Path) -> None:
    """Write a DuckDB `(schema, table)` as the one Parquet file of folder `target`,
    replacing whatever files were there."""
    # Every timestamp goes out as an instant, a wall-clock time read as UTC: Spark reads
    # those as its `timestamp`, in its UTC session the same wall-clock time (Parquet's
    # time-zone-less timestamps would arrive as `timestamp_ntz`, which no model expects).
    duckdb_conn.execute("set TimeZone = 'UTC'")
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    relation = f"{quote_identifier(table[0])}.{quote_identifier(table[1])}"
    columns = ", ".join(
        f"cast({quote_identifier(name)} as timestamptz) as {quote_identifier(name)}"
        if kind == "TIMESTAMP"
        else quote_identifier(name)
        for name, kind, *_ in duckdb_conn.execute(f"describe {relation}").fetchall()
    )
    duckdb_conn.execute(
        f"copy (select {columns} from {relation}) "
        f"to {literal(str(target / 'part-0.parquet'))} (format parquet)"
    )


def export_tables(
    duckdb_conn: duckdb.DuckDBPyConnection, tables: Iterable[Table], folder: Path
) -> dict[str, str]:
    """Write each `(schema, table)` as Parquet into `folder/<schema>/<table>/`, replacing
    what was there. Returns the folder of each, by "schema.table", for
    `register_spark_sources`."""
    locations: dict[str, str] = {}
    for schema, table in tables:
        target = folder / schema / table
        export_table(duckdb_conn, (schema, table), target)
        locations[f"{schema}.{table}"] = str(target.resolve())
    return locations


def exported_sources(crm_home: Path) -> list[Table]:
    """The sources exported for Spark so far (`sources/<schema>/<table>/`)."""
    folder = sources_folder(crm_home)
    return sorted((table.parent.name, table.name) for table in folder.glob("*/*") if table.is_dir())


def spark_tables(crm_home: Path) -> list[Table]:
    """The tables dbt built on Spark so far, by their folders under its warehouse."""
    return sorted(
        (table.parent.name.removesuffix(".db"), table.name)
        for table in warehouse_folder(crm_home).glob("*.db/*")
        if table.is_dir()
    )


def spark_table_folder(crm_home: Path, schema: str, table: str) -> Path:
    """The Parquet folder of a table dbt built on Spark (Spark's `<schema>.db/<table>`)."""
    return warehouse_folder(crm_home) / f"{schema}.db" / table


def instant_columns(manifest_path: Path, tables: Iterable[Table]) -> dict[Table, set[str]]:
    """The columns of each built `(schema, table)` that hold points in time: those its dbt
    properties type `timestamp_ltz` on Spark (`timestamp with time zone` elsewhere)."""
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    wanted = set(tables)
    instants: dict[Table, set[str]] = {}
    for node in manifest["nodes"].values():
        table = (node["schema"], node.get("alias") or node["name"])
        if node["resource_type"] not in BUILT_RESOURCE_TYPES or table not in wanted:
            continue
        columns = {
            name
            for name, column in node.get("columns", {}).items()
            if (column.get("data_type") or "").lower() == "timestamp_ltz"
        }
        if columns:
            instants[table] = columns
    return instants


def mirror_tables(
    duckdb_conn: duckdb.DuckDBPyConnection,
    crm_home: Path,
    tables: Iterable[Table],
    instants: Mapping[Table, set[str]] | None = None,
) -> dict[Table, int]:
    """Replace each `(schema, table)` in DuckDB with the rows Spark wrote for it, in one
    transaction. Spark's one timestamp type comes back as DuckDB's `timestamp` (UTC
    wall-clock time, as dbt builds the staged times on DuckDB), but for the columns
    `instants` names per table (`instant_columns`), which stay `timestamp with time zone`.
    Returns rows per table."""
    copied: dict[Table, int] = {}
    duckdb_conn.execute("set TimeZone = 'UTC'")
    duckdb_conn.execute("begin")
    try:
        for schema, table in tables:
            parquet = spark_table_folder(crm_home, schema, table) / "*.parquet"
            files = f"read_parquet({literal(str(parquet))})"
            kept_instants = (instants or {}).get((schema, table), set())
            columns = ", ".join(
                f"cast({quote_identifier(name)} as timestamp) as {quote_identifier(name)}"
                if kind == "TIMESTAMP WITH TIME ZONE" and name not in kept_instants
                else quote_identifier(name)
                for name, kind, *_ in duckdb_conn.execute(
                    f"describe select * from {files}"
                ).fetchall()
            )
            duckdb_conn.execute(f"create schema if not exists {quote_identifier(schema)}")
            # What DuckDB built as a view, Spark built as a table (`view_materialization`).
            existing = duckdb_conn.execute(
                "select table_type from information_schema.tables where table_catalog = "
                "current_database() and table_schema = ? and table_name = ?",
                [schema, table],
            ).fetchall()
            if existing and existing[0][0] == "VIEW":
                duckdb_conn.execute(
                    f"drop view {quote_identifier(schema)}.{quote_identifier(table)}"
                )
            duckdb_conn.execute(
                f"create or replace table {quote_identifier(schema)}.{quote_identifier(table)} as "
                f"select {columns} from {files}"
            )
            copied[(schema, table)] = duckdb_conn.execute(
                f"select count(*) from {quote_identifier(schema)}.{quote_identifier(table)}"
            ).fetchone()[0]  # type: ignore[index]
        duckdb_conn.execute("commit")
    except duckdb.Error:
        duckdb_conn.execute("rollback")
        raise
    return copied


@dataclass(frozen=True)
class SparkDbt:
    """How to run dbt on the Spark target: the executable, the dbt project (its profiles.yml
    beside it) and the folder for this caller's artefacts. dbt finds them in its environment,
    as dagster-dbt hands them over, with CRM_HOME, which the profile's paths hang from."""

    executable: str
    project_dir: Path
    target_path: Path
    crm_home: Path

    def run(self, arguments: Sequence[str], what: str) -> str:
        env = {
            **os.environ,
            "CRM_HOME": str(self.crm_home.resolve()),
            "DBT_PROJECT_DIR": str(self.project_dir),
            "DBT_PROFILES_DIR": str(self.project_dir),
            "DBT_TARGET_PATH": str(self.target_path),
            "DBT_LOG_PATH": str(self.target_path),
            # Spark binds its driver to the machine's address unless told otherwise.
            "SPARK_LOCAL_IP": os.environ.get("SPARK_LOCAL_IP", "127.0.0.1"),
        }
        result = subprocess.run(
            [self.executable, *arguments, "--target", "spark"],
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            raise SparkBuildError(f"{what} failed:\n{result.stdout[-6000:]}{result.stderr[-3000:]}")
        return result.stdout


def export_sources(
    duckdb_conn: duckdb.DuckDBPyConnection,
    manifest_path: Path,
    built: Iterable[Table],
    crm_home: Path,
) -> dict[str, str]:
    """Export the dbt sources the `built` tables read (`export_tables`), for registering."""
    return export_tables(
        duckdb_conn, source_tables_read(manifest_path, built), sources_folder(crm_home)
    )


def registration_arguments(locations: Mapping[str, str]) -> list[str]:
    """The dbt command that registers exported folders as tables in Spark's catalog,
    through dbt's own Spark session. The catalog keeps them: a folder exported again needs
    no new registration unless its columns changed, but registering costs one Spark start."""
    return [
        "run-operation",
        "register_spark_sources",
        "--args",
        json.dumps({"locations": dict(locations)}),
    ]


def mirror_built(
    duckdb_conn: duckdb.DuckDBPyConnection,
    crm_home: Path,
    manifest_path: Path,
    built: Iterable[Table],
) -> dict[Table, int]:
    """Mirror what dbt built on Spark back into DuckDB (`mirror_tables`), the points in time
    its manifest names kept as such."""
    built = list(built)
    return mirror_tables(duckdb_conn, crm_home, built, instant_columns(manifest_path, built))


def register_sources(dbt: SparkDbt, locations: dict[str, str]) -> None:
    """Register exported folders as tables in Spark's catalog (`registration_arguments`)."""
    if not locations:
        return
    dbt.run(registration_arguments(locations), f"registering {', '.join(locations)} in Spark")


def build_on_spark(
    duckdb_conn: duckdb.DuckDBPyConnection,
    dbt: SparkDbt,
    select: str | None = None,
    exclude: str | None = None,
) -> dict[Table, int]:
    """`dbt build --select <select> --exclude <exclude>` on Spark (dbt's node selection
    syntax; everything when both are None), from and back to the working store.

    The sources the selected nodes read are exported from `duckdb_conn` and registered in
    Spark; dbt builds and tests them on Spark (tests of unselected models are left out,
    `--indirect-selection cautious`); the tables built are mirrored back into
    `duckdb_conn`. Returns rows per table mirrored back."""
    selection = [
        *(["--select", select] if select else []),
        *(["--exclude", exclude] if exclude else []),
    ]
    listed = dbt.run(
        [
            "--quiet",
            "ls",
            *selection,
            "--resource-type",
            *BUILT_RESOURCE_TYPES,
            "--output",
            "json",
            "--output-keys",
            "schema alias name config",
        ],
        f"dbt ls {' '.join(selection)} on Spark",
    )
    built = sorted(
        (node["schema"], node.get("alias") or node["name"])
        for node in map(json.loads, filter(None, listed.splitlines()))
        if node["config"].get("materialized") != "ephemeral"
    )
    manifest = dbt.target_path / "manifest.json"
    register_sources(dbt, export_sources(duckdb_conn, manifest, built, dbt.crm_home))
    dbt.run(
        [
            "build",
            *selection,
            "--indirect-selection",
            "cautious",
            "--exclude-resource-type",
            "unit_test",
        ],
        f"dbt build {' '.join(selection)} on Spark",
    )
    return mirror_built(duckdb_conn, dbt.crm_home, manifest, built)
