"""The quality gate: great-expectations suites on the raw, staging and published tables.

Every expectation is blocking (a failure stops the serving snapshot) or a warning (shown,
not stopping). Suites are code here; GX validates pandas batches read from DuckDB (its SQL
datasource fails on DuckDB, see STACK.md), only the columns a suite checks, so a million-row
mart costs a few columns of memory. Comparisons with the previous run (row counts, the
newest day, the churn-score distribution) read `quality.gate_history`, which records only
runs whose blocking expectations passed: a bad batch never becomes the new baseline.

Raw and staging tables grow by loads, and their rows say when they were loaded. Once a table
has passed, a run validates only the rows loaded since, as long as nothing before that point
was added (no more rows loaded before it than were validated), the table did not shrink, and
for a model the definition is the same; keys must then also be new to the rows validated
before. A row updated in place carries a new load time, so it is validated with the new ones.
A daily run so costs the day's rows, not the whole history. Anything else (a first run, a
smaller table, rows added back in time, a changed model) validates the whole table.

Each validation is appended to `CRM_HOME/reports/quality/results.jsonl`. GX validates in
memory; a validation where an expectation failed is run again in the file context under
`CRM_HOME/reports/quality/gx/`, which keeps its result and renders its data docs (open
`gx/uncommitted/data_docs/local_site/index.html`).
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import duckdb
import great_expectations as gx
import pandas as pd
from great_expectations.data_context.types.base import ProgressBarsConfig
from great_expectations.execution_engine import pandas_execution_engine
from great_expectations.validator.v1_validator import Validator

from crm_warehouse.ingest.batches import RAW_LINEAGE_COLUMNS
from crm_warehouse.ingest.contracts import ALL_CONTRACTS

# GX labels every pandas batch under this many bytes with an MD5 over all its rows
# (`pandas_data_fingerprint` in the result's batch markers): 0.4–1.6 s for each million-row
# mart a run validates whole, for a label nothing reads. A gate's batch is named by its
# table and run instead (`results.jsonl`, the check's metadata).
pandas_execution_engine.HASH_THRESHOLD = 0

# A table's rows may move this much (as a share of the last good run) between runs.
DEFAULT_ROW_TOLERANCE = 0.3
# The mean churn probability may move this much before it is called drift.
DEFAULT_CHURN_DRIFT = 0.1

Expectations = Callable[["Baseline", float], list[gx.expectations.Expectation]]


@dataclass(frozen=True)
class Baseline:
    """What the last run whose blocking expectations passed saw of a table."""

    row_count: int | None = None
    newest_day: date | None = None
    mean_score: float | None = None
    # The newest load the run validated, and the dbt model's checksum then (None for raw).
    validated_through: datetime | None = None
    definition: str | None = None


@dataclass(frozen=True)
class TableGate:
    table: str  # schema.name in the warehouse, also the suite name
    query: str  # the columns the suite checks (derived flags computed here, in SQL)
    expectations: Expectations
    day_column: str | None = None
    score_column: str | None = None
    # When each row was loaded: the table grows by loads, and a run validates only the rows
    # loaded since the last good one (see the module's docstring). `query` must then end with
    # `from <table>`.
    loaded_column: str | None = None


@dataclass
class Outcome:
    table: str
    blocking_passed: bool
    warnings_passed: bool
    failures: list[dict[str, Any]] = field(default_factory=list)
    row_count: int = 0
    # The rows the suite read: the whole table, or only the rows loaded after `loaded_after`.
    rows_checked: int = 0
    loaded_after: datetime | None = None

    def as_metadata(self) -> dict[str, Any]:
        return {
            "row_count": self.row_count,
            "rows_checked": self.rows_checked,
            "loaded_after": None if self.loaded_after is None else self.loaded_after.isoformat(),
            "blocking_passed": self.blocking_passed,
            "warnings_passed": self.warnings_passed,
            "failures": self.failures,
        }


def _blocking(expectation: gx.expectations.Expectation) -> gx.expectations.Expectation:
    expectation.meta = {**(expectation.meta or {}), "blocking": True}
    return expectation


def _warning(expectation: gx.expectations.Expectation) -> gx.expectations.Expectation:
    expectation.meta = {**(expectation.meta or {}), "blocking": False}
    return expectation


def _row_count(baseline: Baseline, tolerance: float) -> list[gx.expectations.Expectation]:
    """Rows lost since the last good run block; rows gained beyond the tolerance only warn:
    a backfill of history legitimately multiplies a table, and duplicates are the keys' job."""
    if baseline.row_count is None:
        return [_blocking(gx.expectations.ExpectTableRowCountToBeBetween(min_value=1))]
    return [
        _blocking(
            gx.expectations.ExpectTableRowCountToBeBetween(
                min_value=int(baseline.row_count * (1 - tolerance))
            )
        ),
        _warning(
            gx.expectations.ExpectTableRowCountToBeBetween(
                max_value=int(baseline.row_count * (1 + tolerance)) + 1
            )
        ),
    ]


def _not_older(baseline: Baseline, column: str) -> list[gx.expectations.Expectation]:
    if baseline.newest_day is None:
        return []
    return [
        _blocking(
            gx.expectations.ExpectColumnMaxToBeBetween(
                column=column, min_value=pd.Timestamp(baseline.newest_day).to_pydatetime()
            )
        )
    ]


def _key(column: str) -> list[gx.expectations.Expectation]:
    return [
        _blocking(gx.expectations.ExpectColumnValuesToNotBeNull(column=column)),
        _blocking(gx.expectations.ExpectColumnValuesToBeUnique(column=column)),
    ]


def _between(column: str, low: float, high: float | None = None) -> gx.expectations.Expectation:
    return _blocking(
        gx.expectations.ExpectColumnValuesToBeBetween(column=column, min_value=low, max_value=high)
    )


def _all_true(column: str, *, mostly: float = 1.0) -> gx.expectations.Expectation:
    """A flag computed in the gate's SQL (a reference that resolves, a time order) holds."""
    return gx.expectations.ExpectColumnValuesToBeInSet(
        column=column, value_set=[True], mostly=mostly
    )


def _known_customers() -> gx.expectations.Expectation:
    # Referential integrity: every customer_id of a fact is in dim_customers.
    return _blocking(_all_true("known_customer"))


_KNOWN = "customer_id in (select customer_id from marts.dim_customers) as known_customer"

# The published tables: what apps and dashboards read.
PUBLISHED_GATES: tuple[TableGate, ...] = (
    TableGate(
        "marts.fct_orders",
        "select order_id, order_amount, margin_amount, ordered_on from marts.fct_orders",
        lambda base, tol: [
            *_row_count(base, tol),
            *_key("order_id"),
            _between("order_amount", 0),
            _warning(gx.expectations.ExpectColumnValuesToNotBeNull(column="ordered_on")),
            *_not_older(base, "ordered_on"),
        ],
        day_column="ordered_on",
    ),
    TableGate(
        "marts.customer_360",
        "select customer_id, revenue, average_satisfaction, phone_e164 from marts.customer_360",
        lambda base, tol: [
            *_row_count(base, tol),
            *_key("customer_id"),
            _between("revenue", 0),
            _between("average_satisfaction", 1, 5),
            _warning(
                gx.expectations.ExpectColumnValuesToNotBeNull(column="phone_e164", mostly=0.5)
            ),
        ],
    ),
    TableGate(
        "marts.customer_segments",
        "select customer_id, value_tier, lifecycle_stage from marts.customer_segments",
        lambda base, tol: [
            *_row_count(base, tol),
            *_key("customer_id"),
            _blocking(
                gx.expectations.ExpectColumnValuesToBeInSet(
                    column="value_tier", value_set=["diamond", "gold", "silver", "regular"]
                )
            ),
        ],
    ),
    TableGate(
        "marts.customer_scores",
        f"select customer_id, churn_probability, probability_alive, {_KNOWN} "
        "from marts.customer_scores",
        lambda base, tol: [
            *_row_count(base, tol),
            *_key("customer_id"),
            _known_customers(),
            _between("churn_probability", 0, 1),
            _between("probability_alive", 0, 1),
            *(
                []
                if base.mean_score is None
                else [
                    _warning(
                        gx.expectations.ExpectColumnMeanToBeBetween(
                            column="churn_probability",
                            min_value=base.mean_score - DEFAULT_CHURN_DRIFT,
                            max_value=base.mean_score + DEFAULT_CHURN_DRIFT,
                        )
                    )
                ]
            ),
        ],
        score_column="churn_probability",
    ),
    TableGate(
        "marts.fct_customer_alerts",
        f"select alert_date, severity, {_KNOWN} from marts.fct_customer_alerts",
        lambda base, tol: [
            _known_customers(),
            _blocking(
                gx.expectations.ExpectColumnValuesToBeInSet(
                    column="severity", value_set=["high", "medium", "low"]
                )
            ),
            *_not_older(base, "alert_date"),
        ],
        day_column="alert_date",
    ),
    TableGate(
        "marts.customer_care_list",
        f"select care_date, {_KNOWN} from marts.customer_care_list",
        lambda base, tol: [_known_customers()],
    ),
    TableGate(
        "marts.fct_service_kpis_daily",
        "select kpi_date, answer_rate, service_level, first_contact_resolution_rate, csat "
        "from marts.fct_service_kpis_daily",
        lambda base, tol: [
            *_row_count(base, tol),
            _between("answer_rate", 0, 1),
            _between("service_level", 0, 1),
            _between("first_contact_resolution_rate", 0, 1),
            _between("csat", 1, 5),
            *_not_older(base, "kpi_date"),
        ],
        day_column="kpi_date",
    ),
    TableGate(
        "marts.fct_campaign_performance",
        "select campaign_id, conversion_rate, campaign_cost from marts.fct_campaign_performance",
        lambda base, tol: [
            _between("conversion_rate", 0, 1),
            _between("campaign_cost", 0),
            _warning(gx.expectations.ExpectColumnValuesToNotBeNull(column="campaign_cost")),
        ],
    ),
)


def _day(column: str) -> str:
    return f"cast({column} as date) as {column}"


# The raw tables: what ingest loaded, before dbt reads it. Raw grows by whole batches, so its
# row counts move little between runs; a sudden drop means rows were lost.
RAW_GATES: tuple[TableGate, ...] = (
    TableGate(
        "raw.form_submissions",
        f"select submission_id, {_day('submitted_at')}, "
        "coalesce(phone, email) is not null as has_contact from raw.form_submissions",
        lambda base, tol: [
            *_row_count(base, tol),
            *_key("submission_id"),
            _warning(_all_true("has_contact", mostly=0.8)),
            *_not_older(base, "submitted_at"),
        ],
        loaded_column="_loaded_at",
        day_column="submitted_at",
    ),
    TableGate(
        "raw.calls",
        f"select call_id, {_day('queued_at')}, ended_at >= queued_at as ends_after_queueing "
        "from raw.calls",
        lambda base, tol: [
            *_row_count(base, tol),
            *_key("call_id"),
            _blocking(_all_true("ends_after_queueing")),
            *_not_older(base, "queued_at"),
        ],
        loaded_column="_loaded_at",
        day_column="queued_at",
    ),
    TableGate(
        "raw.tickets",
        f"select ticket_id, updated_at, satisfaction, {_day('opened_at')} from raw.tickets",
        lambda base, tol: [
            *_row_count(base, tol),
            _blocking(gx.expectations.ExpectColumnValuesToNotBeNull(column="ticket_id")),
            _blocking(
                gx.expectations.ExpectCompoundColumnsToBeUnique(
                    column_list=["ticket_id", "updated_at"]
                )
            ),
            _between("satisfaction", 1, 5),
            *_not_older(base, "opened_at"),
        ],
        loaded_column="_loaded_at",
        day_column="opened_at",
    ),
    # Campaign definitions arrive as whole snapshots, each a batch: a campaign is in every
    # snapshot since it started, once per snapshot (staging reads the newest).
    TableGate(
        "raw.campaigns",
        "select campaign_id, _batch_id, cost from raw.campaigns",
        lambda base, tol: [
            _blocking(gx.expectations.ExpectColumnValuesToNotBeNull(column="campaign_id")),
            _blocking(
                gx.expectations.ExpectCompoundColumnsToBeUnique(
                    column_list=["campaign_id", "_batch_id"]
                )
            ),
            _between("cost", 0),
        ],
    ),
    TableGate(
        "raw.campaign_touches",
        "select touch_id, campaign_id in (select campaign_id from raw.campaigns) "
        "as known_campaign from raw.campaign_touches",
        lambda base, tol: [
            *_row_count(base, tol),
            *_key("touch_id"),
            _blocking(_all_true("known_campaign")),
        ],
        loaded_column="_loaded_at",
    ),
    TableGate(
        "raw.sales_customers",
        "select id, member_no from raw.sales_customers",
        lambda base, tol: [
            *_row_count(base, tol),
            *_key("id"),
            _blocking(gx.expectations.ExpectColumnValuesToNotBeNull(column="member_no")),
        ],
        loaded_column="_loaded_at",
    ),
    TableGate(
        "raw.sales_orders",
        # Ingest admits an order whose customer waits in quarantine for a fix: a few are fine.
        f"select id, total_amount, {_day('ordered_at')}, "
        "customer_id in (select id from raw.sales_customers) as known_customer "
        "from raw.sales_orders",
        lambda base, tol: [
            *_row_count(base, tol),
            *_key("id"),
            _between("total_amount", 0),
            _warning(_all_true("known_customer", mostly=0.99)),
            *_not_older(base, "ordered_at"),
        ],
        loaded_column="_loaded_at",
        day_column="ordered_at",
    ),
    TableGate(
        "raw.sales_order_lines",
        "select id, quantity, amount, "
        "order_id in (select id from raw.sales_orders) as known_order from raw.sales_order_lines",
        lambda base, tol: [
            *_row_count(base, tol),
            *_key("id"),
            _between("quantity", 1),
            _between("amount", 0),
            _warning(_all_true("known_order", mostly=0.99)),
        ],
        loaded_column="_loaded_at",
    ),
)

# Staging: the sources cleaned and typed by dbt, one row per entity.
STAGING_GATES: tuple[TableGate, ...] = (
    TableGate(
        "staging.stg_forms__submissions",
        "select submission_id, phone_e164, email, is_email_valid "
        "from staging.stg_forms__submissions",
        lambda base, tol: [
            *_row_count(base, tol),
            *_key("submission_id"),
            _warning(
                gx.expectations.ExpectColumnValuesToNotBeNull(column="phone_e164", mostly=0.6)
            ),
            _warning(_all_true("is_email_valid", mostly=0.5)),
        ],
        loaded_column="loaded_at",
    ),
    TableGate(
        "staging.stg_callcentre__calls",
        "select call_id, wait_seconds, talk_seconds, caller_phone_e164 "
        "from staging.stg_callcentre__calls",
        lambda base, tol: [
            *_row_count(base, tol),
            *_key("call_id"),
            _between("wait_seconds", 0),
            _between("talk_seconds", 0),
            _warning(
                gx.expectations.ExpectColumnValuesToNotBeNull(
                    column="caller_phone_e164", mostly=0.9
                )
            ),
        ],
        loaded_column="loaded_at",
    ),
    TableGate(
        "staging.stg_callcentre__tickets",
        "select ticket_id, satisfaction_score from staging.stg_callcentre__tickets",
        lambda base, tol: [
            *_row_count(base, tol),
            *_key("ticket_id"),
            _between("satisfaction_score", 1, 5),
        ],
        loaded_column="loaded_at",
    ),
    TableGate(
        "staging.stg_sales__customers",
        "select sales_customer_id, member_no, phone_e164 from staging.stg_sales__customers",
        lambda base, tol: [
            *_row_count(base, tol),
            *_key("sales_customer_id"),
            *_key("member_no"),
            _warning(
                gx.expectations.ExpectColumnValuesToNotBeNull(column="phone_e164", mostly=0.8)
            ),
        ],
        loaded_column="loaded_at",
    ),
    TableGate(
        "staging.stg_sales__orders",
        "select order_id, sales_customer_id, order_amount from staging.stg_sales__orders",
        lambda base, tol: [
            *_row_count(base, tol),
            *_key("order_id"),
            _blocking(gx.expectations.ExpectColumnValuesToNotBeNull(column="sales_customer_id")),
            _between("order_amount", 0),
        ],
        loaded_column="loaded_at",
    ),
    TableGate(
        "staging.stg_campaigns__touches",
        "select touch_id from staging.stg_campaigns__touches",
        lambda base, tol: [*_row_count(base, tol), *_key("touch_id")],
        loaded_column="loaded_at",
    ),
)

GATES = (*RAW_GATES, *STAGING_GATES, *PUBLISHED_GATES)
GATES_BY_TABLE = {gate.table: gate for gate in GATES}

_HISTORY_DDL = """
create table if not exists quality.gate_history (
    checked_at timestamp,
    table_name varchar,
    row_count bigint,
    newest_day date,
    mean_score double,
    validated_through timestamp,
    definition varchar
)
"""
# Homes made before the gate validated only new rows.
_HISTORY_MIGRATIONS = (
    "alter table quality.gate_history add column if not exists validated_through timestamp",
    "alter table quality.gate_history add column if not exists definition varchar",
)


def _context(project_dir: Path) -> Any:
    logging.getLogger("great_expectations").setLevel(logging.WARNING)
    context = gx.get_context(mode="file", project_root_dir=project_dir)
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    return context


def baseline(conn: duckdb.DuckDBPyConnection, table: str) -> Baseline:
    conn.execute("create schema if not exists quality")
    conn.execute(_HISTORY_DDL)
    for migration in _HISTORY_MIGRATIONS:
        conn.execute(migration)
    rows = conn.execute(
        "select row_count, newest_day, mean_score, validated_through, definition "
        "from quality.gate_history where table_name = ? order by checked_at desc limit 1",
        [table],
    ).fetchall()
    return Baseline(*rows[0]) if rows else Baseline()


@dataclass(frozen=True)
class _Rows:
    """What a validation reads: the query, its parameters, and the expectations that hold
    of those rows; when they are only the rows loaded after `loaded_after`, the table's
    row count."""

    query: str
    parameters: dict[str, Any]
    expectations: list[gx.expectations.Expectation]
    loaded_after: datetime | None = None
    table_rows: int | None = None


def _rows_to_check(
    conn: duckdb.DuckDBPyConnection,
    gate: TableGate,
    base: Baseline,
    row_tolerance: float,
    definition: str | None,
) -> _Rows:
    """The whole table, or only the rows loaded since the last good validation when nothing
    before it changed (same rows and, for a model, same definition)."""
    whole = _Rows(gate.query, {}, gate.expectations(base, row_tolerance))
    since = base.validated_through
    if (
        gate.loaded_column is None
        or since is None
        or base.row_count is None
        or definition != base.definition
    ):
        return whole
    loaded = gate.loaded_column
    before, total = conn.execute(
        f"select count(*) filter (where {loaded} <= ?), count(*) from {gate.table}", [since]
    ).fetchall()[0]
    # Rows loaded before may only have gone: an update in place (the sales pull's orders
    # and members, staged tickets) gives a row a new load time, and it is then validated
    # with the new rows. More of them than validated means rows added back in time; a
    # smaller table, rows lost: either is validated whole.
    if before > base.row_count or total < base.row_count:
        return whole
    # The rows validated before that are left are unchanged, so what held of the table
    # holds of them, and the table did not shrink. Growth beyond the tolerance is the new
    # rows' count; a key must be unique among the new rows and new to the old.
    new_keys: list[gx.expectations.Expectation] = []
    flags: list[str] = []
    expectations: list[gx.expectations.Expectation] = []
    growth_limit = int(base.row_count * (1 + row_tolerance)) + 1 - before
    for expectation in whole.expectations:
        if isinstance(expectation, gx.expectations.ExpectTableRowCountToBeBetween):
            if expectation.max_value is not None:
                expectations.append(
                    _warning(gx.expectations.ExpectTableRowCountToBeBetween(max_value=growth_limit))
                )
            continue
        if isinstance(expectation, gx.expectations.ExpectColumnMaxToBeBetween):
            continue
        expectations.append(expectation)
        key: list[str] = []
        if isinstance(expectation, gx.expectations.ExpectColumnValuesToBeUnique):
            key = [expectation.column]
        elif isinstance(expectation, gx.expectations.ExpectCompoundColumnsToBeUnique):
            key = list(expectation.column_list)
        if key:
            flag = f"{'_'.join(key)}_is_new"
            name = gate.table.split(".", 1)[1]
            same_key = " and ".join(f"earlier.{c} = {name}.{c}" for c in key)
            flags.append(
                f"not exists (select 1 from {gate.table} as earlier "
                f"where earlier.{loaded} <= $since and {same_key}) as {flag}"
            )
            new_keys.append(_blocking(_all_true(flag)))
    suffix = f" from {gate.table}"
    if not gate.query.endswith(suffix):
        raise ValueError(f"{gate.table}: a gate on new rows needs a query ending in {suffix!r}")
    head = gate.query[: -len(suffix)]
    query = f"{', '.join([head, *flags])}{suffix} where {loaded} > $since"
    return _Rows(query, {"since": since}, [*expectations, *new_keys], since, total)


def _run_suite(
    project_dir: Path,
    name: str,
    expectations: list[gx.expectations.Expectation],
    frame: pd.DataFrame,
) -> list[Any]:
    """Validate `frame` against the expectations, named `name`.

    In memory first: GX's file-backed context re-reads and re-writes its YAML configuration
    for every suite, checkpoint and result it stores (about 0.8 s a table, against 0.06 s
    in memory), and a passing validation has nothing to show that `results.jsonl` and the
    check's metadata do not. Where something failed, warnings included, the validation is
    run again through a checkpoint of the file context under `project_dir`, which keeps the
    result and renders its data docs.
    """
    suite = gx.ExpectationSuite(name=name, expectations=[e.copy() for e in expectations])
    # The validator loads the batch once; `Batch.validate` would load it (and hash every
    # row for its fingerprint) a second time.
    validator = Validator(
        batch_definition=_batch_definition(_memory_context(), name),
        batch_parameters={"dataframe": frame},
        result_format="SUMMARY",
    )
    results = list(validator.validate_expectation_suite(suite).results)
    if all(result.success for result in results):
        return results
    return _run_checkpoint(_context(project_dir), name, expectations, frame)


@functools.cache
def _memory_context() -> Any:
    logging.getLogger("great_expectations").setLevel(logging.WARNING)
    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    return context


def _batch_definition(context: Any, name: str) -> Any:
    """The whole-dataframe batch of the asset for `name`, added on first use."""
    source = context.data_sources.add_or_update_pandas("warehouse")
    asset_name = name.replace(".", "__")
    asset = next((a for a in source.assets if a.name == asset_name), None) or (
        source.add_dataframe_asset(asset_name)
    )
    return next(
        (b for b in asset.batch_definitions if b.name == "whole"), None
    ) or asset.add_batch_definition_whole_dataframe("whole")


def _run_checkpoint(
    context: Any, name: str, expectations: list[gx.expectations.Expectation], frame: pd.DataFrame
) -> list[Any]:
    """Validate through a checkpoint of the file context, which stores the result, and
    render its data docs."""
    batch = _batch_definition(context, name)
    suite = context.suites.add_or_update(gx.ExpectationSuite(name=name))
    for expectation in expectations:
        suite.add_expectation(expectation.copy())
    suite.save()
    definition = context.validation_definitions.add_or_update(
        gx.ValidationDefinition(name=name, data=batch, suite=suite)
    )
    checkpoint = context.checkpoints.add_or_update(
        gx.Checkpoint(
            name=f"gate__{name.replace('.', '__')}",
            validation_definitions=[definition],
            actions=[],
        )
    )
    result = checkpoint.run(batch_parameters={"dataframe": frame})
    context.build_data_docs(resource_identifiers=list(result.run_results))
    return [expectation for run in result.run_results.values() for expectation in run.results]


def model_definition(table: str, manifest_path: Path | None) -> str | None:
    """The checksum of the dbt model that builds `table` (None for raw tables)."""
    if table.startswith("raw."):
        return None
    node = _model_node(table, manifest_path)
    return None if node is None else str(node["checksum"]["checksum"])


def _model_node(table: str, manifest_path: Path | None) -> dict[str, Any] | None:
    if manifest_path is None or not manifest_path.exists():
        return None
    models = _models(manifest_path, manifest_path.stat().st_mtime_ns)
    return models.get(table.split(".", 1)[1])


@functools.lru_cache(maxsize=2)
def _models(manifest_path: Path, modified: int) -> dict[str, dict[str, Any]]:
    """The manifest's models by name, read once per version of the file: every gated table
    asks for its model twice, and the manifest is megabytes of JSON."""
    nodes = json.loads(manifest_path.read_text(encoding="utf-8"))["nodes"].values()
    return {n["name"]: n for n in nodes if n["resource_type"] == "model"}


def expected_columns(table: str, manifest_path: Path | None) -> tuple[list[str], bool] | None:
    """The columns `table` must have, and whether exactly those: the ingest contract for raw,
    dbt's manifest for models (exact where the model's contract is enforced)."""
    schema, name = table.split(".", 1)
    if schema == "raw":
        contract = next((c for c in ALL_CONTRACTS if c.table == name), None)
        if contract is None:
            return None
        return [c.name for c in contract.columns] + list(RAW_LINEAGE_COLUMNS), True
    node = _model_node(table, manifest_path)
    if node is None or not node["columns"]:
        return None
    enforced = bool(node["config"].get("contract", {}).get("enforced"))
    return list(node["columns"]), enforced


def validate(
    conn: duckdb.DuckDBPyConnection,
    gate: TableGate,
    reports_dir: Path,
    *,
    row_tolerance: float = DEFAULT_ROW_TOLERANCE,
    columns: tuple[list[str], bool] | None = None,
    definition: str | None = None,
) -> Outcome:
    """Validate one table against its suite, and its schema against `columns` (the columns it
    must have, and whether only those); remember it as the baseline if the blocking
    expectations passed. `definition` identifies the model that built the table (its dbt
    checksum): a changed model is validated whole."""
    base = baseline(conn, gate.table)
    rows = _rows_to_check(conn, gate, base, row_tolerance, definition)
    frame = conn.execute(rows.query, rows.parameters).df()
    project_dir = reports_dir / "quality"
    results = _run_suite(project_dir, gate.table, rows.expectations, frame)
    if columns is not None:
        # The schema is checked on the table's real columns, without reading any row.
        layout = conn.execute(f"select * from {gate.table} limit 0").df()
        names, exact = columns
        schema = _blocking(
            gx.expectations.ExpectTableColumnsToMatchSet(column_set=names, exact_match=exact)
        )
        results += _run_suite(project_dir, f"{gate.table}.schema", [schema], layout)
    failures = []
    blocking_passed = warnings_passed = True
    for expectation in results:
        if expectation.success:
            continue
        blocking = bool(expectation.expectation_config.meta.get("blocking"))
        if blocking:
            blocking_passed = False
        else:
            warnings_passed = False
        failures.append(
            {
                "expectation": expectation.expectation_config.type,
                "column": expectation.expectation_config.kwargs.get("column"),
                "blocking": blocking,
                "observed": _observed(expectation.result),
                "kwargs": {
                    k: v
                    for k, v in expectation.expectation_config.kwargs.items()
                    if k not in ("batch_id", "column")
                },
            }
        )
    row_count = len(frame) if rows.table_rows is None else rows.table_rows
    outcome = Outcome(
        gate.table, blocking_passed, warnings_passed, failures, row_count, len(frame),
        rows.loaded_after,
    )  # fmt: skip
    if blocking_passed:
        newest = _newest_day(frame, gate.day_column, base if rows.loaded_after else None)
        scores = frame[gate.score_column].dropna() if gate.score_column else frame.iloc[0:0]
        # No scores yet (too little history to train): no baseline to drift from either.
        mean = float(scores.mean()) if len(scores) else None
        validated_through = (
            conn.execute(f"select max({gate.loaded_column}) from {gate.table}").fetchall()[0][0]
            if gate.loaded_column
            else None
        )
        conn.execute(
            "insert into quality.gate_history (checked_at, table_name, row_count, newest_day, "
            "mean_score, validated_through, definition) values (?, ?, ?, ?, ?, ?, ?)",
            [
                datetime.now(UTC).replace(tzinfo=None),
                gate.table,
                row_count,
                newest,
                mean,
                validated_through,
                definition,
            ],
        )
    _record(reports_dir, outcome)
    return outcome


def _newest_day(frame: pd.DataFrame, column: str | None, earlier: Baseline | None) -> date | None:
    """The newest day in `frame`, or, when it holds only new rows, in them and the `earlier`
    ones."""
    if column is None:
        return None
    days = [pd.Timestamp(frame[column].max())] if len(frame) else []
    if earlier is not None and earlier.newest_day is not None:
        days.append(pd.Timestamp(earlier.newest_day))
    days = [day for day in days if not pd.isna(day)]
    return max(days).date() if days else None


def _observed(result: dict[str, Any]) -> Any:
    for key in ("observed_value", "unexpected_count"):
        if key in result:
            value = result[key]
            return value if isinstance(value, int | float | str) else str(value)
    return None


def _record(reports_dir: Path, outcome: Outcome) -> None:
    folder = reports_dir / "quality"
    folder.mkdir(parents=True, exist_ok=True)
    entry = {"at": datetime.now(UTC).isoformat(timespec="seconds"), "table": outcome.table}
    entry |= outcome.as_metadata()
    with (folder / "results.jsonl").open("a", encoding="utf-8") as results:
        results.write(json.dumps(entry, ensure_ascii=False, default=str) + "\n")


def data_docs_index(reports_dir: Path) -> Path:
    site = reports_dir / "quality" / "gx" / "uncommitted" / "data_docs" / "local_site"
    return site / "index.html"
