"""Where everything lives: one `Settings` built from the environment and `CRM_HOME/crm.toml`.

Precedence, highest first: environment variables (`CRM_*`), the optional config file
`$CRM_HOME/crm.toml`, then the defaults below. Every path the system writes is under `CRM_HOME`.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import duckdb

from crm_warehouse.target.postgres import PostgresConnection

# Where the dbt models build: the embedded DuckDB file, or an existing PostgreSQL server.
TARGETS = ("duckdb", "postgres", "spark")
# Where identity resolution and scoring run: in this process on DuckDB, or on Spark.
ENGINES = ("duckdb", "spark")

DEFAULT_SALES_TABLES = {
    "customers": "customers",
    "products": "products",
    "orders": "orders",
    "order_lines": "order_lines",
}


class SettingsError(ValueError):
    """The configuration is unusable; the message names the variable or key to fix."""


@dataclass(frozen=True)
class Settings:
    crm_home: Path
    forms_dir: Path
    callcentre_dir: Path
    campaigns_dir: Path
    sales_url: str
    sales_tables: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_SALES_TABLES))
    source_timezone: str = "Asia/Shanghai"
    # GB18030 decodes every GBK byte sequence the same way and also covers what GBK lacks.
    forms_csv_encoding: str = "gb18030"
    sales_chunk_rows: int = 200_000
    # DuckDB spills to CRM_HOME/tmp past this, so a million customers ingest in bounded memory.
    duckdb_memory_limit: str = "768MB"
    # The engine the dbt project builds on (CRM_TARGET); with postgres, the server in
    # `postgres` (CRM_PG_*) holds the models, with spark a Spark session (CRM_SPARK_*, in
    # dbt's profile) under CRM_HOME/spark; DuckDB stays the Python steps' working store.
    target: str = "duckdb"
    postgres: PostgresConnection = field(default_factory=PostgresConnection)
    # Splink scores pairs in its own in-memory DuckDB, beside the warehouse's.
    identity_memory_limit: str = "1536MB"
    # Where Splink runs (CRM_IDENTITY_ENGINE): that DuckDB, or a Spark session in this
    # process (the default with CRM_TARGET=spark); the stable ids stay in the warehouse.
    identity_engine: str = "duckdb"
    # Scoring's feature query ran out of memory under the ingest limit above at 3M
    # customers (DuckDB could not spill it), so scoring raises the limit while it runs.
    scoring_memory_limit: str = "4GB"
    # Churn is retrained and lifetime value refitted when the live fits are this many days
    # of data old; the runs between score with them (0: refit on every run).
    scoring_refit_days: int = 7
    # Where scoring runs (CRM_SCORING_ENGINE): DuckDB in this process, or Spark (the default
    # with CRM_TARGET=spark), whose driver receives at most CRM_SCORING_DRIVER_ROWS rows to
    # fit and judge the models on (ml/spark_scoring.py); every customer is scored on Spark.
    scoring_engine: str = "duckdb"
    scoring_driver_rows: int = 2_000_000
    # Serving snapshots kept for rollback; the Unix group that may read the unmasked twin
    # (none: no unmasked twin is written).
    serving_keep: int = 5
    serving_unmasked_group: str | None = None
    # The erasure blocklist's HMAC key; without it one is generated under CRM_HOME/erasure.
    erasure_key: str | None = field(default=None, repr=False)
    # Operations: when the daily run starts (cron, in source_timezone), where failed runs are
    # posted (none: the log only), and how many days a source may lag the others.
    schedule_cron: str = "0 6 * * *"
    alert_webhook_url: str | None = field(default=None, repr=False)
    freshness_max_lag_days: int = 2
    # The first local day the event sources' daily partitions offer to backfill.
    partitions_start: str = "2025-01-01"

    @property
    def sources_dir(self) -> Path:
        return self.crm_home / "sources"

    @property
    def truth_dir(self) -> Path:
        return self.sources_dir / "_truth"

    @property
    def warehouse_path(self) -> Path:
        return self.crm_home / "warehouse.duckdb"

    @property
    def dagster_home(self) -> Path:
        return self.crm_home / "dagster"

    @property
    def models_dir(self) -> Path:
        return self.crm_home / "models"

    @property
    def identity_model_dir(self) -> Path:
        return self.models_dir / "identity"

    @property
    def serving_dir(self) -> Path:
        return self.crm_home / "serving"

    @property
    def erasure_dir(self) -> Path:
        return self.crm_home / "erasure"

    @property
    def reports_dir(self) -> Path:
        return self.crm_home / "reports"

    @property
    def bench_dir(self) -> Path:
        return self.crm_home / "bench"

    @property
    def scratch_dir(self) -> Path:
        return self.crm_home / "tmp"

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> Settings:
        env = dict(os.environ if environ is None else environ)
        crm_home = Path(env.get("CRM_HOME") or ".crm").expanduser().resolve()
        file_config = _read_config_file(crm_home / "crm.toml")
        sources = crm_home / "sources"

        def setting(env_name: str, key: str, default: Any) -> Any:
            if env.get(env_name):
                return env[env_name]
            return file_config.get(key, default)

        sales_tables = dict(DEFAULT_SALES_TABLES)
        sales_tables.update(file_config.get("sales_tables", {}))
        for logical in DEFAULT_SALES_TABLES:
            override = env.get(f"CRM_SALES_TABLE_{logical.upper()}")
            if override:
                sales_tables[logical] = override

        try:
            chunk_rows = int(setting("CRM_SALES_CHUNK_ROWS", "sales_chunk_rows", 200_000))
        except ValueError as error:
            raise SettingsError(f"CRM_SALES_CHUNK_ROWS must be a whole number: {error}") from None
        try:
            serving_keep = int(setting("CRM_SERVING_KEEP", "serving_keep", 5))
        except ValueError as error:
            raise SettingsError(f"CRM_SERVING_KEEP must be a whole number: {error}") from None
        try:
            freshness_lag = int(setting("CRM_FRESHNESS_MAX_LAG_DAYS", "freshness_max_lag_days", 2))
        except ValueError as error:
            raise SettingsError(
                f"CRM_FRESHNESS_MAX_LAG_DAYS must be a whole number: {error}"
            ) from None
        try:
            refit_days = int(setting("CRM_SCORING_REFIT_DAYS", "scoring_refit_days", 7))
        except ValueError as error:
            raise SettingsError(f"CRM_SCORING_REFIT_DAYS must be a whole number: {error}") from None
        if refit_days < 0:
            raise SettingsError(f"CRM_SCORING_REFIT_DAYS must be 0 or more, not {refit_days}")
        partitions_start = str(setting("CRM_PARTITIONS_START", "partitions_start", "2025-01-01"))
        try:
            date.fromisoformat(partitions_start)
        except ValueError:
            raise SettingsError(
                f"CRM_PARTITIONS_START must be a day (YYYY-MM-DD), not {partitions_start!r}"
            ) from None
        target = str(setting("CRM_TARGET", "target", "duckdb"))
        if target not in TARGETS:
            raise SettingsError(f"CRM_TARGET must be one of {', '.join(TARGETS)}, not {target!r}")

        def engine(variable: str, key: str) -> str:
            name = str(setting(variable, key, "spark" if target == "spark" else "duckdb"))
            if name not in ENGINES:
                raise SettingsError(f"{variable} must be one of {', '.join(ENGINES)}, not {name!r}")
            return name

        identity_engine = engine("CRM_IDENTITY_ENGINE", "identity_engine")
        scoring_engine = engine("CRM_SCORING_ENGINE", "scoring_engine")
        try:
            driver_rows = int(setting("CRM_SCORING_DRIVER_ROWS", "scoring_driver_rows", 2_000_000))
        except ValueError as error:
            raise SettingsError(
                f"CRM_SCORING_DRIVER_ROWS must be a whole number: {error}"
            ) from None
        if driver_rows < 1:
            raise SettingsError(f"CRM_SCORING_DRIVER_ROWS must be 1 or more, not {driver_rows}")
        try:
            # dbt's profile reads the same variables, so the connection is environment-only.
            postgres = PostgresConnection.from_env(env)
        except ValueError as error:
            raise SettingsError(str(error)) from None
        if serving_keep < 2:
            raise SettingsError("CRM_SERVING_KEEP must be at least 2, so rollback has a target")

        return cls(
            crm_home=crm_home,
            forms_dir=Path(setting("CRM_FORMS_DIR", "forms_dir", sources / "forms")),
            callcentre_dir=Path(
                setting("CRM_CALLCENTRE_DIR", "callcentre_dir", sources / "callcentre")
            ),
            campaigns_dir=Path(
                setting("CRM_CAMPAIGNS_DIR", "campaigns_dir", sources / "campaigns")
            ),
            sales_url=str(
                setting("CRM_SALES_URL", "sales_url", f"sqlite:///{sources / 'sales' / 'sales.db'}")
            ),
            sales_tables=sales_tables,
            source_timezone=str(setting("CRM_SOURCE_TIMEZONE", "source_timezone", "Asia/Shanghai")),
            forms_csv_encoding=str(
                setting("CRM_FORMS_CSV_ENCODING", "forms_csv_encoding", "gb18030")
            ),
            sales_chunk_rows=chunk_rows,
            duckdb_memory_limit=str(
                setting("CRM_DUCKDB_MEMORY_LIMIT", "duckdb_memory_limit", "768MB")
            ),
            target=target,
            postgres=postgres,
            identity_memory_limit=str(
                setting("CRM_IDENTITY_MEMORY_LIMIT", "identity_memory_limit", "1536MB")
            ),
            identity_engine=identity_engine,
            scoring_memory_limit=str(
                setting("CRM_SCORING_MEMORY_LIMIT", "scoring_memory_limit", "4GB")
            ),
            scoring_refit_days=refit_days,
            scoring_engine=scoring_engine,
            scoring_driver_rows=driver_rows,
            serving_keep=serving_keep,
            serving_unmasked_group=setting(
                "CRM_SERVING_UNMASKED_GROUP", "serving_unmasked_group", None
            ),
            # Only from the environment: a secret has no place in a config file.
            erasure_key=env.get("CRM_ERASURE_KEY") or None,
            schedule_cron=str(setting("CRM_SCHEDULE_CRON", "schedule_cron", "0 6 * * *")),
            # A webhook URL often carries its token: environment only, like the key.
            alert_webhook_url=env.get("CRM_ALERT_WEBHOOK_URL") or None,
            freshness_max_lag_days=freshness_lag,
            partitions_start=partitions_start,
        )

    def duckdb_config(self) -> dict[str, str]:
        """Connection settings for every process that writes the warehouse."""
        return {"memory_limit": self.duckdb_memory_limit, "temp_directory": str(self.scratch_dir)}

    def connect_warehouse(self) -> duckdb.DuckDBPyConnection:
        self.ensure_dirs()
        return duckdb.connect(str(self.warehouse_path), config=self.duckdb_config())

    def ensure_dirs(self) -> None:
        for directory in (
            self.crm_home,
            self.dagster_home,
            self.models_dir,
            self.reports_dir,
            self.bench_dir,
            self.scratch_dir,
        ):
            directory.mkdir(parents=True, exist_ok=True)


def _read_config_file(path: Path) -> dict[str, Any]:
    if not path.exists():
        return {}
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except tomllib.TOMLDecodeError as error:
        raise SettingsError(f"{path}: not valid TOML: {error}") from None
