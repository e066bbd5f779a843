"""Where Splink scores pairs: an in-memory DuckDB beside the warehouse (the default), or a
Spark session (`CRM_IDENTITY_ENGINE=spark`, the default with `CRM_TARGET=spark`).

Identity resolution runs the same settings, SQL and stable-id logic on either: the records
go in as Arrow tables, Splink trains, predicts and clusters on the engine's own backend
(`splink.backends.duckdb` or `splink.backends.spark`), the project's certain-pair and
weak-record rules run as SQL there, and the edges and clusters come back as Arrow tables to
the warehouse, where the stable ids are kept. Both engines speak the subset of SQL those
rules are written in; what differs is how a query becomes a table, and the one function the
comparisons call that neither ships alike (`char_levenshtein`).
"""

from __future__ import annotations

import math
import re
import tempfile
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import duckdb
import pandas as pd
import pyarrow as pa
import sqlglot
from rapidfuzz.distance import Levenshtein
from splink.backends.duckdb import DuckDBAPI
from sqlglot import exp

from crm_warehouse.target.spark import local_spark_session

if TYPE_CHECKING:
    from pyspark.sql import SparkSession


ENGINES = ("duckdb", "spark")

# The records Splink draws u's pairs from, for a dedupe or each side of a link.
_U_SAMPLE = re.compile(r"__splink__df_concat_sample(_left|_right)?")


class SplinkEngine(Protocol):
    """What identity resolution needs of the place Splink runs in."""

    dialect: str

    def api(self) -> Any:
        """Splink's database API for this engine."""

    def load(self, table: str, data: pa.Table | pd.DataFrame) -> None:
        """Rows (Arrow or pandas) into `table`, replacing it."""

    def materialise(self, table: str, query: str) -> None:
        """A query's rows as `table`, replacing it."""

    def fetch(self, query: str) -> pa.Table:
        """A query's rows, back in this process."""

    def scalar(self, query: str) -> int:
        """A query's one whole number."""

    def frame(self, data: pa.Table) -> Any:
        """Rows in the form this engine's Splink API registers (term-frequency lookups)."""


def char_levenshtein(left: pa.Array, right: pa.Array) -> pa.Array:
    """Edit distance in characters, not UTF-8 bytes (DuckDB's `levenshtein('王芳','王方')` is 3)."""
    distance = Levenshtein.distance
    return pa.array(
        [
            None if a is None or b is None else distance(a, b)
            for a, b in zip(left.to_pylist(), right.to_pylist(), strict=True)
        ],
        type=pa.int32(),
    )


def splink_connection(memory_limit: str = "2GB", temp_dir: Path | None = None):  # type: ignore[no-untyped-def]
    """An in-memory DuckDB for Splink with the functions the comparisons call."""
    config = {"memory_limit": memory_limit, "threads": "2"}
    if temp_dir is not None:
        temp_dir.mkdir(parents=True, exist_ok=True)
        config["temp_directory"] = str(temp_dir)
    conn = duckdb.connect(":memory:", config=config)
    conn.create_function(
        "char_levenshtein",
        char_levenshtein,
        ["VARCHAR", "VARCHAR"],
        "INTEGER",
        type="arrow",
        null_handling="special",
        side_effects=False,
    )
    return conn


def copy_into(
    conn: duckdb.DuckDBPyConnection, table: str, data: object, *, temp: bool = False
) -> None:
    """A pandas frame or Arrow table into `table` of `conn`, replacing it: how rows move
    between the warehouse and Splink's own DuckDB."""
    view = f"{table}_incoming_data"
    conn.register(view, data)
    try:
        conn.execute(
            f"create or replace {'temp ' if temp else ''}table {table} as select * from {view}"
        )
    finally:
        conn.unregister(view)


class DuckDBEngine:
    """Splink on an in-memory DuckDB (`splink_connection`): the default."""

    dialect = "duckdb"

    def __init__(self, conn: duckdb.DuckDBPyConnection) -> None:
        self.conn = conn

    def api(self) -> DuckDBAPI:
        return DuckDBAPI(connection=self.conn)

    def load(self, table: str, data: pa.Table | pd.DataFrame) -> None:
        copy_into(self.conn, table, data)

    def materialise(self, table: str, query: str) -> None:
        self.conn.execute(f"create or replace table {table} as {query}")

    def fetch(self, query: str) -> pa.Table:
        return self.conn.sql(query).to_arrow_table()

    def scalar(self, query: str) -> int:
        return int(self.conn.execute(query).fetchall()[0][0])

    def frame(self, data: pa.Table) -> pa.Table:
        return data


def _double_literals(node: exp.Expression) -> exp.Expression:
    """Splink's own Spark dialect writes `cast(0.5 as double)` as `0.5D`; so does this."""
    if (
        isinstance(node, exp.Cast | exp.TryCast)
        and isinstance(node.this, exp.Literal)
        and not node.this.is_string
        and node.to.is_type(exp.DataType.Type.DOUBLE)
    ):
        return exp.var(f"{node.this.name}D")
    return node


def _spark_api_class() -> type:
    from splink.backends.spark import SparkAPI

    class CompiledSqlglotSparkAPI(SparkAPI):  # type: ignore[misc]
        """Splink's SparkAPI, generating its SQL with sqlglot's own Spark dialect.

        Splink translates every statement through its `customspark` dialect, a subclass of
        sqlglot's Spark generator; with sqlglot's compiled build (sqlglotc, which our lock
        installs) that generator is compiled and cannot be subclassed ("interpreted classes
        cannot inherit from compiled", sqlglot PR #7700), so the stock SparkAPI fails on its
        first statement. `customspark`'s one change, double literals, is kept here."""

        def _setup_for_execute_sql(self, sql: str, physical_name: str) -> str:
            tree = sqlglot.parse_one(sql, read="spark")
            return tree.transform(_double_literals).sql(dialect="spark", pretty=True)

        def _repartition_if_needed(self, spark_df: Any, templated_name: str) -> Any:
            # u is counted on every pair of a small sample of records (a cross join). Spark
            # estimates the sample at its source's size, so past the broadcast limit it
            # runs the cross join as one task per pair of partitions. Splink's list of
            # tables to repartition still names the sample as it was in Splink 3
            # (`__splink__df_concat_with_tf_sample`), so the sample kept its source's
            # partitions: the 1.7M records of a 1M-customer run arrive as 171 (one per
            # 10,000-row Arrow batch), which made 29,241 tasks and 310-393 s per sampling
            # chunk. √n partitions a side make about n tasks (0.4-1.4 s a chunk).
            if _U_SAMPLE.fullmatch(templated_name):
                sides = math.ceil(math.sqrt(self.num_partitions_on_repartition))
                return spark_df.repartition(sides)
            return super()._repartition_if_needed(spark_df, templated_name)

    return CompiledSqlglotSparkAPI


class SparkEngine:
    """Splink on a Spark session: Splink's Spark backend, tables as temporary views."""

    dialect = "spark"

    def __init__(self, spark: SparkSession, partitions: int) -> None:
        self.spark = spark
        self.partitions = partitions
        self._api_class = _spark_api_class()
        # Spark's own levenshtein counts characters (UTF-16 units; every Chinese character
        # of a name is one), which is what char_levenshtein is on DuckDB.
        spark.sql(
            "create or replace temporary function char_levenshtein(a string, b string) "
            "returns int return levenshtein(a, b)"
        )

    def api(self) -> Any:
        # Splink's default way to cut a long lineage ("parquet") writes each table to
        # <checkpoint dir>/<its name> with mode overwrite: when a name comes round again (u
        # sampling's chunks), the files a still-lazy earlier read points at are gone
        # (FAILED_READ_FILE.FILE_NOT_EXIST, seen in CI). Spark's own checkpoints never reuse
        # a path.
        return self._api_class(
            spark_session=self.spark,
            break_lineage_method="checkpoint",
            num_partitions_on_repartition=self.partitions,
        )

    def load(self, table: str, data: pa.Table | pd.DataFrame) -> None:
        if isinstance(data, pd.DataFrame):
            data = pa.Table.from_pandas(data, preserve_index=False)
        self.frame(data).createOrReplaceTempView(table)

    def materialise(self, table: str, query: str) -> None:
        # Spark's session catalog has no temporary tables: the rows are computed once
        # (a local checkpoint) and named by a view.
        self.spark.sql(query).localCheckpoint().createOrReplaceTempView(table)

    def fetch(self, query: str) -> pa.Table:
        return self.spark.sql(query).toArrow()

    def scalar(self, query: str) -> int:
        return int(self.spark.sql(query).collect()[0][0])

    def frame(self, data: pa.Table) -> Any:
        # A column with no value at all arrives as Arrow's null type, which Spark keeps as
        # `void`; the comparisons expect text.
        fields = [
            pa.field(f.name, pa.string()) if pa.types.is_null(f.type) else f for f in data.schema
        ]
        return self.spark.createDataFrame(data.cast(pa.schema(fields)))


@contextmanager
def duckdb_engine(
    memory_limit: str = "2GB", temp_dir: Path | None = None
) -> Iterator[DuckDBEngine]:
    """An in-memory DuckDB for Splink (`splink_connection`), closed afterwards."""
    with splink_connection(memory_limit, temp_dir) as conn:
        yield DuckDBEngine(conn)


@contextmanager
def spark_engine(work_dir: Path) -> Iterator[SparkEngine]:
    """A Spark session in this process for Splink (`local_spark_session`), with its
    checkpoints (where Splink cuts long query lineages) under `work_dir`."""
    with local_spark_session("crm-warehouse identity", work_dir) as spark:
        yield SparkEngine(spark, int(spark.conf.get("spark.sql.shuffle.partitions")))


def open_engine(
    name: str = "duckdb", memory_limit: str = "2GB", work_dir: Path | None = None
) -> AbstractContextManager[SplinkEngine]:
    """The engine `name` ("duckdb" or "spark"; see `ENGINES`) as a context manager: DuckDB
    with `memory_limit`, spilling to `work_dir`; Spark with its checkpoints there."""
    if name not in ENGINES:
        raise ValueError(f"identity engine must be one of {', '.join(ENGINES)}, not {name!r}")
    if name == "spark":
        return spark_engine((work_dir or Path(tempfile.gettempdir())) / "identity-spark")
    return duckdb_engine(memory_limit, work_dir)
