"""Stable `customer_id`s on top of Splink, which has neither stable cluster ids nor
incremental linking.

State lives in the warehouse's `identity` schema:

- `identity.records`: every resolved source record, its comparable values and its customer.
- `identity.customers`: every id ever issued; `merged_into` names the survivor of a merge.
- `identity.customer_id_history`: each merge and split (old id, new id, reason, at), so an
  app holding an old id can follow it to the current one.
- `identity.runs`: what each run did.

A first run (or an explicit retrain) resolves every record and maps the clusters onto the
ids already issued. Every other run is incremental: only new or changed records are
scored, against the existing records that share a blocking key with them. Ids are issued
in order (`CU000000001`, …), so the older of two ids is the smaller: a merge keeps it.
"""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import pandas as pd

from crm_warehouse.identity.engines import SplinkEngine, copy_into, open_engine
from crm_warehouse.identity.model import IdentityModel, train
from crm_warehouse.identity.records import PREPARED_COLUMNS, RECORD_COLUMNS, prepare
from crm_warehouse.identity.resolve import cluster, score_pairs, term_frequency_tables
from crm_warehouse.settings import Settings

log = logging.getLogger(__name__)

STAGED_RECORDS = "intermediate.int_identity__records"
ID_PREFIX = "CU"
ID_DIGITS = 9
# Columns whose change makes a known record worth linking again.
_COMPARED = [c for c in PREPARED_COLUMNS if c not in ("record_id", "source", "source_key")]
# An incoming record `i` whose comparable values differ from its known version `r`.
_VALUES_DIFFER = " or ".join(f"i.{c} is distinct from r.{c}" for c in _COMPARED)

_SCHEMA = """
create schema if not exists identity;
create table if not exists identity.records (
    record_id varchar primary key,
    source varchar not null,
    source_key varchar not null,
    name_norm varchar,
    name_key varchar,
    name_tokens varchar[],
    gender varchar,
    birth_date varchar,
    phone varchar,
    email varchar,
    id_card varchar,
    address varchar,
    city varchar,
    postcode varchar,
    member_no varchar,
    fingerprint varchar not null,
    customer_id varchar not null,
    linked_at timestamptz not null,
    run_id varchar not null
);
create table if not exists identity.customers (
    customer_id varchar primary key,
    id_number bigint not null,
    created_at timestamptz not null,
    created_run_id varchar not null,
    merged_into varchar,
    merged_at timestamptz
);
create table if not exists identity.customer_id_history (
    old_customer_id varchar not null,
    new_customer_id varchar not null,
    change_kind varchar not null,
    reason varchar not null,
    changed_at timestamptz not null,
    run_id varchar not null
);
create table if not exists identity.runs (
    run_id varchar primary key,
    mode varchar not null,
    started_at timestamptz not null,
    seconds double not null,
    records_total bigint not null,
    records_new bigint not null,
    records_changed bigint not null,
    records_scored bigint not null,
    pairs_linked bigint not null,
    customers_created bigint not null,
    customers_merged bigint not null,
    customers_split bigint not null,
    model_trained_at varchar not null,
    threshold double not null
);
"""


@dataclass(frozen=True)
class IdentityRun:
    run_id: str
    mode: str
    records_total: int
    records_new: int
    records_changed: int
    records_scored: int
    pairs_linked: int
    customers_created: int
    customers_merged: int
    customers_split: int
    seconds: float
    model_trained_at: str
    threshold: float

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def link_staged_records(
    warehouse: duckdb.DuckDBPyConnection, settings: Settings, *, retrain: bool = False
) -> IdentityRun:
    """The pipeline's identity step: link the records dbt staged (`STAGED_RECORDS`) with
    the model under `CRM_HOME/models/identity` and the configured memory."""
    return link_records(
        warehouse,
        warehouse.sql(f"select * from {STAGED_RECORDS}"),
        settings.identity_model_dir,
        retrain=retrain,
        memory_limit=settings.identity_memory_limit,
        scratch_dir=settings.scratch_dir,
        engine=settings.identity_engine,
    )


def ensure_identity_schema(conn: duckdb.DuckDBPyConnection) -> None:
    conn.execute(_SCHEMA)


def link_records(
    warehouse: duckdb.DuckDBPyConnection,
    records: pd.DataFrame | duckdb.DuckDBPyRelation,
    model_dir: Path,
    *,
    retrain: bool = False,
    threshold: float | None = None,
    memory_limit: str = "2GB",
    scratch_dir: Path | None = None,
    engine: str = "duckdb",
) -> IdentityRun:
    """Give every record in `records` (the record schema: a frame, or a relation on
    `warehouse`) its stable `customer_id`. Splink runs on `engine`: an in-memory DuckDB
    with `memory_limit` (spilling to `scratch_dir`), or a Spark session ("spark",
    `crm_warehouse.identity.engines`); the ids are kept in `warehouse` either way.

    Without a saved model, or with `retrain`, a model is trained on all records, saved to
    `model_dir` and every record is resolved again, keeping the ids already issued wherever
    the people are the same. Otherwise only new and changed records are linked.
    """
    started = time.perf_counter()
    started_at = datetime.now(UTC)
    run_id = f"identity-{started_at:%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:6]}"
    ensure_identity_schema(warehouse)
    retrain_or_first = retrain or IdentityModel.load(model_dir) is None
    prepared = prepare(_worth_preparing(warehouse, records, everything=retrain_or_first))
    copy_into(warehouse, "incoming", prepared[list(PREPARED_COLUMNS)], temp=True)
    # What the run will write, filled by whichever path it takes; empty if nothing changes.
    warehouse.execute(
        """
        create or replace temp table pending_history (
            old_customer_id varchar, new_customer_id varchar,
            change_kind varchar, reason varchar
        );
        create or replace temp table issued (customer_id varchar, id_number bigint);
        create or replace temp table merges (old_customer_id varchar, new_customer_id varchar);
        """
    )
    known = _scalar(warehouse, "select count(*) from identity.records")
    model = None if retrain else IdentityModel.load(model_dir)
    full = model is None or known == 0
    with open_engine(engine, memory_limit, scratch_dir) as splink:
        if full:
            figures = _resolve_everything(warehouse, splink, model, model_dir, threshold)
        else:
            assert model is not None
            figures = _link_new(warehouse, splink, model, threshold)
    model = figures.pop("model")
    run = IdentityRun(
        run_id=run_id,
        mode="full" if full else "incremental",
        records_total=_scalar(warehouse, "select count(*) from fingerprints"),
        seconds=round(time.perf_counter() - started, 2),
        model_trained_at=model.trained_at,
        threshold=model.threshold if threshold is None else threshold,
        **figures,
    )
    _write(warehouse, run, started_at)
    return run


def _worth_preparing(
    warehouse: duckdb.DuckDBPyConnection,
    records: pd.DataFrame | duckdb.DuckDBPyRelation,
    *,
    everything: bool,
) -> pd.DataFrame:
    """The records that are new or changed since they were last linked (all of them for a
    full run), found by a fingerprint of their raw values, so an unchanged million records
    are not normalised again every run. A relation stays in DuckDB until then: only the
    records worth preparing become a frame."""
    fingerprint = ", ".join(f"cast({c} as varchar)" for c in RECORD_COLUMNS if c != "updated_at")
    worth_it = """
        select f.record_id from fingerprints as f
        left join identity.records as r using (record_id)
        where r.fingerprint is distinct from f.fingerprint
    """
    if isinstance(records, duckdb.DuckDBPyRelation):
        records.select(", ".join(RECORD_COLUMNS)).create_view("records_input", replace=True)
        warehouse.execute(
            f"""
            create or replace temp table fingerprints as
            select source || ':' || source_key as record_id,
                   md5(concat_ws(chr(31), {fingerprint})) as fingerprint
            from records_input
            """
        )
        chosen = "" if everything else f"where source || ':' || source_key in ({worth_it})"
        return warehouse.sql(
            f"select * from records_input {chosen} order by source, source_key"
        ).df()
    frame = records.reindex(columns=list(RECORD_COLUMNS)).reset_index(drop=True)
    warehouse.register("records_frame", frame.assign(_position=range(len(frame))))
    warehouse.execute(
        f"""
        create or replace temp table fingerprints as
        select _position as position,
               cast(source as varchar) || ':' || cast(source_key as varchar) as record_id,
               md5(concat_ws(chr(31), {fingerprint})) as fingerprint
        from records_frame
        """
    )
    warehouse.unregister("records_frame")
    if everything:
        return frame
    positions = warehouse.sql(
        f"""
        select position from fingerprints
        where record_id in ({worth_it})
        order by position
        """
    ).fetchnumpy()["position"]
    return frame.iloc[positions]


def _scalar(conn: duckdb.DuckDBPyConnection, sql: str) -> int:
    return int(conn.execute(sql).fetchall()[0][0])


def _resolve_everything(
    warehouse: duckdb.DuckDBPyConnection,
    splink: SplinkEngine,
    model: IdentityModel | None,
    model_dir: Path,
    threshold: float | None,
) -> dict[str, object]:
    splink.load("records", warehouse.sql("select * from incoming").to_arrow_table())
    if model is None:
        model = train(splink, "records")
        model.save(model_dir)
        log.info(
            "identity model trained on %d records, saved to %s",
            model.trained_on_records,
            model_dir,
        )
    edges = score_pairs(splink, "records", model, threshold=threshold)
    clusters = cluster(splink, "records", edges, model, threshold=threshold)
    copy_into(warehouse, "clusters", splink.fetch(f"select * from {clusters}"), temp=True)
    pairs = splink.scalar(f"select count(*) from {edges}")
    new_records = _scalar(
        warehouse,
        "select count(*) from incoming anti join identity.records using (record_id)",
    )
    changed = _changed_count(warehouse)
    # Each old id's home is the cluster holding most of its records; the other clusters
    # its records landed in are splits. A cluster keeps the oldest id whose home it is.
    warehouse.execute(
        """
        create or replace temp table previous as
        select record_id, customer_id from identity.records;

        create or replace temp table homes as
        select customer_id, cluster_id from (
            select p.customer_id, c.cluster_id,
                   row_number() over (
                       partition by p.customer_id order by count(*) desc, c.cluster_id
                   ) as rank
            from previous as p join clusters as c using (record_id)
            group by p.customer_id, c.cluster_id
        ) where rank = 1;

        create or replace temp table cluster_ids as
        select cluster_id, min(customer_id) as customer_id,
               list(customer_id order by customer_id) as held_ids
        from homes group by cluster_id;
        """
    )
    merges = warehouse.sql(
        """
        select unnest(held_ids[2:]) as old_customer_id, customer_id as new_customer_id
        from cluster_ids where len(held_ids) > 1
        """
    ).fetchall()
    splits = warehouse.sql(
        """
        select distinct p.customer_id as old_customer_id, c.cluster_id
        from previous as p join clusters as c using (record_id)
        anti join homes as h on h.customer_id = p.customer_id and h.cluster_id = c.cluster_id
        """
    ).fetchall()
    issued = _issue_ids_to_unclaimed(warehouse, "clusters", "cluster_ids")
    warehouse.execute(
        """
        create or replace temp table assigned as
        select c.record_id, coalesce(k.customer_id, f.customer_id) as customer_id
        from clusters as c
        left join cluster_ids as k using (cluster_id)
        left join fresh_ids as f using (cluster_id)
        """
    )
    split_rows = [
        (old, _cluster_customer(warehouse, cluster_id, issued)) for old, cluster_id in splits
    ]
    _record_history(warehouse, merges, "merge", "new evidence: the records are one person")
    _record_history(warehouse, split_rows, "split", "re-resolved: some records are another person")
    _issue_rows(warehouse, issued)
    _merge_customers(warehouse, merges)
    warehouse.execute(
        """
        create or replace temp table linked as
        select i.*, a.customer_id from incoming as i join assigned as a using (record_id)
        """
    )
    return {
        "model": model,
        "records_new": new_records,
        "records_changed": changed,
        "records_scored": _scalar(warehouse, "select count(*) from incoming"),
        "pairs_linked": pairs,
        "customers_created": len(issued),
        "customers_merged": len(merges),
        "customers_split": len({old for old, _ in split_rows}),
    }


def _cluster_customer(
    warehouse: duckdb.DuckDBPyConnection, cluster_id: str, issued: dict[str, str]
) -> str:
    if cluster_id in issued:
        return issued[cluster_id]
    return str(
        warehouse.execute(
            "select customer_id from cluster_ids where cluster_id = ?", [cluster_id]
        ).fetchall()[0][0]
    )


def _changed_count(warehouse: duckdb.DuckDBPyConnection) -> int:
    return _scalar(
        warehouse,
        f"""select count(*) from incoming as i join identity.records as r using (record_id)
            where {_VALUES_DIFFER}""",
    )


def _link_new(
    warehouse: duckdb.DuckDBPyConnection,
    splink: SplinkEngine,
    model: IdentityModel,
    threshold: float | None,
) -> dict[str, object]:
    warehouse.execute(
        f"""
        create or replace temp table touching as
        select i.*, r.customer_id as known_customer_id
        from incoming as i left join identity.records as r using (record_id)
        where r.record_id is null or {_VALUES_DIFFER}
        """
    )
    new_records = _scalar(
        warehouse, "select count(*) from touching where known_customer_id is null"
    )
    changed = _scalar(
        warehouse, "select count(*) from touching where known_customer_id is not null"
    )
    if new_records + changed == 0:
        warehouse.execute(
            "create or replace temp table linked as "
            "select *, cast(null as varchar) as customer_id from incoming limit 0"
        )
        return _no_change(model)
    columns = ", ".join(PREPARED_COLUMNS)
    # The known records that could be the same person as a touching one: those sharing a
    # blocking key with it. Scoring runs on these and the touching records only. One equi-
    # join per key: a join on OR-ed keys cannot hash and would compare every pair.
    shared_keys = [
        ["phone"],
        ["email"],
        ["id_card"],
        ["member_no"],
        ["name_key", "city"],
        ["name_key", "birth_date"],
        ["name_key", "postcode"],
    ]
    candidates = " union ".join(
        f"""
        select r.record_id from identity.records as r
        semi join touching as t on {" and ".join(f"r.{k} = t.{k}" for k in keys)}
        """
        for keys in shared_keys
    )
    neighbours = warehouse.sql(
        f"""
        select {columns} from touching
        union all
        select {", ".join("r." + c for c in PREPARED_COLUMNS)}
        from identity.records as r
        semi join ({candidates}) as candidate using (record_id)
        anti join touching as own on own.record_id = r.record_id
        """
    ).to_arrow_table()
    warehouse.execute(
        f"""
        create or replace temp table everyone as
        select {columns} from identity.records anti join touching using (record_id)
        union all select {columns} from touching
        """
    )
    frequencies = term_frequency_tables(warehouse, "everyone", model)
    splink.load("records", neighbours)
    splink.load("touching_ids", warehouse.sql("select record_id from touching").to_arrow_table())
    edges = score_pairs(
        splink,
        "records",
        model,
        threshold=threshold,
        touching="touching_ids",
        term_frequencies=frequencies,
    )
    copy_into(
        warehouse,
        "scored_edges",
        splink.fetch(f"select record_id_l, record_id_r, match_probability from {edges}"),
        temp=True,
    )
    # A known record stands for its customer: the graph's nodes are the touching records
    # and the customers they reach.
    warehouse.execute(
        """
        create or replace temp table customer_graph_edges as
        select coalesce(l.customer_id, e.record_id_l) as record_id_l,
               coalesce(r.customer_id, e.record_id_r) as record_id_r,
               e.match_probability
        from scored_edges as e
        left join identity.records as l
            on l.record_id = e.record_id_l
            and l.record_id not in (select record_id from touching)
        left join identity.records as r
            on r.record_id = e.record_id_r
            and r.record_id not in (select record_id from touching)
        union all
        select record_id, known_customer_id, 1.0 from touching where known_customer_id is not null;

        create or replace temp table customer_graph_nodes as
        select record_id from touching
        union
        select record_id_l from customer_graph_edges
        union
        select record_id_r from customer_graph_edges;
        """
    )
    pairs = _scalar(warehouse, "select count(*) from customer_graph_edges")
    for graph_table in ("nodes", "edges"):
        splink.load(
            f"graph_{graph_table}",
            warehouse.sql(f"select * from customer_graph_{graph_table}").to_arrow_table(),
        )
    components = cluster(splink, "graph_nodes", "graph_edges", model, threshold=threshold)
    copy_into(warehouse, "components", splink.fetch(f"select * from {components}"), temp=True)
    warehouse.execute(
        """
        create or replace temp table component_customers as
        select cluster_id, list(record_id order by record_id) as customer_ids
        from components
        where record_id in (select customer_id from identity.customers)
        group by cluster_id;
        """
    )
    merges = warehouse.sql(
        """
        select unnest(customer_ids[2:]) as old_customer_id, customer_ids[1] as new_customer_id
        from component_customers where len(customer_ids) > 1
        """
    ).fetchall()
    issued = _issue_ids_to_unclaimed(warehouse, "components", "component_customers")
    warehouse.execute(
        """
        create or replace temp table linked as
        select t.* exclude (known_customer_id),
               coalesce(k.customer_ids[1], f.customer_id) as customer_id
        from touching as t
        join components as c using (record_id)
        left join component_customers as k using (cluster_id)
        left join fresh_ids as f using (cluster_id)
        """
    )
    _record_history(warehouse, merges, "merge", "new evidence: the records are one person")
    _issue_rows(warehouse, issued)
    _merge_customers(warehouse, merges)
    return {
        "model": model,
        "records_new": new_records,
        "records_changed": changed,
        "records_scored": len(neighbours),
        "pairs_linked": pairs,
        "customers_created": len(issued),
        "customers_merged": len(merges),
        "customers_split": 0,
    }


def _no_change(model: IdentityModel) -> dict[str, object]:
    return {
        "model": model,
        "records_new": 0,
        "records_changed": 0,
        "records_scored": 0,
        "pairs_linked": 0,
        "customers_created": 0,
        "customers_merged": 0,
        "customers_split": 0,
    }


def _issue_ids_to_unclaimed(
    warehouse: duckdb.DuckDBPyConnection, clusters: str, claimed: str
) -> dict[str, str]:
    """New ids for the clusters of `clusters` (record_id, cluster_id) that no existing id
    claims in `claimed` (by cluster_id), in the order of their smallest record; registered
    as the temp table `fresh_ids`."""
    unclaimed = [
        row[0]
        for row in warehouse.sql(
            f"""
            select cluster_id from {clusters} anti join {claimed} using (cluster_id)
            group by cluster_id order by min(record_id)
            """
        ).fetchall()
    ]
    issued = _issue_ids(warehouse, unclaimed)
    _register_issued(warehouse, issued)
    return issued


def _issue_ids(warehouse: duckdb.DuckDBPyConnection, clusters: list[str]) -> dict[str, str]:
    """A new id for each cluster, in order, after the last id ever issued."""
    last = _scalar(warehouse, "select coalesce(max(id_number), 0) from identity.customers")
    issued: dict[str, str] = {}
    number = last
    for cluster_id in clusters:
        number += 1
        customer_id = f"{ID_PREFIX}{number:0{ID_DIGITS}d}"
        issued[cluster_id] = customer_id
    return issued


def _register_issued(warehouse: duckdb.DuckDBPyConnection, issued: dict[str, str]) -> None:
    frame = pd.DataFrame(
        {"cluster_id": list(issued), "customer_id": list(issued.values())}, dtype="object"
    )
    warehouse.register("fresh_frame", frame)
    warehouse.execute(
        "create or replace temp table fresh_ids as select cast(cluster_id as varchar) as "
        "cluster_id, cast(customer_id as varchar) as customer_id from fresh_frame"
    )
    warehouse.unregister("fresh_frame")


def _issue_rows(warehouse: duckdb.DuckDBPyConnection, issued: dict[str, str]) -> None:
    warehouse.register(
        "issued_frame", pd.DataFrame({"customer_id": list(issued.values())}, dtype="object")
    )
    warehouse.execute(
        """
        create or replace temp table issued as
        select cast(customer_id as varchar) as customer_id,
               cast(substr(cast(customer_id as varchar), 3) as bigint) as id_number
        from issued_frame
        """
    )
    warehouse.unregister("issued_frame")


def _record_history(
    warehouse: duckdb.DuckDBPyConnection,
    rows: list[tuple[str, str]],
    kind: str,
    reason: str,
) -> None:
    frame = pd.DataFrame(rows, columns=["old_customer_id", "new_customer_id"], dtype="object")
    warehouse.register("history_frame", frame)
    warehouse.execute(
        """
        insert into pending_history
        select cast(old_customer_id as varchar), cast(new_customer_id as varchar), $kind, $reason
        from history_frame
        """,
        {"kind": kind, "reason": reason},
    )
    warehouse.unregister("history_frame")


def _merge_customers(warehouse: duckdb.DuckDBPyConnection, merges: list[tuple[str, str]]) -> None:
    warehouse.register(
        "merges_frame",
        pd.DataFrame(merges, columns=["old_customer_id", "new_customer_id"], dtype="object"),
    )
    warehouse.execute(
        """
        create or replace temp table merges as
        select cast(old_customer_id as varchar) as old_customer_id,
               cast(new_customer_id as varchar) as new_customer_id
        from merges_frame
        """
    )
    warehouse.unregister("merges_frame")


def _write(warehouse: duckdb.DuckDBPyConnection, run: IdentityRun, at: datetime) -> None:
    """Apply the run in one transaction: records, new ids, merges, history, the run row."""
    warehouse.execute("begin transaction")
    try:
        columns = ", ".join(PREPARED_COLUMNS)
        at_run = {"at": at, "run": run.run_id}
        warehouse.execute(
            "delete from identity.records where record_id in (select record_id from linked)"
        )
        warehouse.execute(
            f"""
            insert into identity.records
                ({columns}, fingerprint, customer_id, linked_at, run_id)
            select {columns}, f.fingerprint, customer_id, $at, $run
            from linked join fingerprints as f using (record_id)
            """,
            at_run,
        )
        warehouse.execute(
            """
            insert into identity.customers
                (customer_id, id_number, created_at, created_run_id, merged_into, merged_at)
            select customer_id, id_number, $at, $run, null, null from issued
            """,
            at_run,
        )
        # A merged id's records, and any ids merged into it before, follow the survivor.
        warehouse.execute(
            """
            update identity.records as r set customer_id = m.new_customer_id
            from merges as m where r.customer_id = m.old_customer_id
            """
        )
        warehouse.execute(
            """
            update identity.customers as c set merged_into = m.new_customer_id, merged_at = $at
            from merges as m
            where c.customer_id = m.old_customer_id or c.merged_into = m.old_customer_id
            """,
            {"at": at},
        )
        warehouse.execute(
            """
            insert into identity.customer_id_history
            select old_customer_id, new_customer_id, change_kind, reason, $at, $run
            from pending_history
            """,
            at_run,
        )
        warehouse.execute(
            """
            insert into identity.runs values (
                $run, $mode, $at, $seconds, $total, $new, $changed, $scored, $pairs,
                $created, $merged, $split, $trained, $threshold
            )
            """,
            {
                **at_run,
                "mode": run.mode,
                "seconds": run.seconds,
                "total": run.records_total,
                "new": run.records_new,
                "changed": run.records_changed,
                "scored": run.records_scored,
                "pairs": run.pairs_linked,
                "created": run.customers_created,
                "merged": run.customers_merged,
                "split": run.customers_split,
                "trained": run.model_trained_at,
                "threshold": run.threshold,
            },
        )
        warehouse.execute("commit")
    except duckdb.Error:
        warehouse.execute("rollback")
        raise
    finally:
        warehouse.execute(
            "drop table if exists pending_history; drop table if exists issued; "
            "drop table if exists merges; drop table if exists linked"
        )
