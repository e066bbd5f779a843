"""Resolve records to people: Splink's scored pairs plus certain rules, then clusters.

`resolve(records)` is the plain entry point for any frame in the record schema
(`crm_warehouse.identity.records`); the pipeline's stable, incremental ids are built on the
same `score_pairs` and `cluster` in `crm_warehouse.identity.stable_ids`.
"""

from __future__ import annotations

import logging

import duckdb
import pandas as pd
import pyarrow as pa
from splink import Linker
from splink.clustering import cluster_pairwise_predictions_at_threshold

from crm_warehouse.identity.engines import SplinkEngine, open_engine
from crm_warehouse.identity.model import IdentityModel, train
from crm_warehouse.identity.records import prepare

log = logging.getLogger(__name__)

EDGE_COLUMNS = "record_id_l, record_id_r, match_probability, rule"


def resolve(
    records: pd.DataFrame,
    model: IdentityModel | None = None,
    *,
    threshold: float | None = None,
    default_region: str = "CN",
    engine: str = "duckdb",
) -> pd.DataFrame:
    """Which records are the same person.

    `records` follows the record schema (`source`, `source_key` and any of name, gender,
    birth_date, phone, email, id_card, address, city, postcode, member_no). Without a
    `model`, one is trained on these records. Returns one row per record: `source`,
    `source_key`, `cluster_id` (equal for records of one person: the smallest
    `source:source_key` among them) and `cluster_size`. Splink runs on `engine`: an
    in-memory DuckDB, or "spark", a local Spark session (`pip install '.[spark]'`, Java 17).
    """
    prepared = prepare(records, default_region=default_region)
    with open_engine(engine) as splink:
        splink.load("records", prepared)
        if model is None:
            model = train(splink, "records")
        edges = score_pairs(splink, "records", model, threshold=threshold)
        clusters = cluster(splink, "records", edges, model, threshold=threshold)
        return splink.fetch(
            f"""
            select r.source, r.source_key, c.cluster_id,
                   count(*) over (partition by c.cluster_id) as cluster_size
            from records as r join {clusters} as c using (record_id)
            order by r.source, r.source_key
            """
        ).to_pandas()


def score_pairs(
    engine: SplinkEngine,
    table: str,
    model: IdentityModel,
    *,
    threshold: float | None = None,
    touching: str | None = None,
    term_frequencies: dict[str, pa.Table] | None = None,
) -> str:
    """Pairs of records in `table` that are the same person, as a table of `EDGE_COLUMNS`.

    Splink scores the pairs its blocking rules make; certain rules add pairs that need no
    score. With `touching` (a table of record_ids), only pairs with at least one of those
    records are kept: that is incremental linking. `term_frequencies` are the value
    frequencies to use when `table` holds only a subset of all records. `engine` is where
    Splink runs (`crm_warehouse.identity.engines`).
    """
    cut = model.threshold if threshold is None else threshold
    db_api = engine.api()
    linker = Linker(db_api.register(table), model.splink_settings_in(engine.dialect))
    for column, frame in (term_frequencies or {}).items():
        linker.table_management.register_term_frequency_lookup(
            db_api.register(engine.frame(frame)), column
        )
    predictions = linker.inference.predict(threshold_match_probability=cut)
    scored = predictions.physical_name
    keep = (
        ""
        if touching is None
        else f"""where record_id_l in (select record_id from {touching})
                 or record_id_r in (select record_id from {touching})"""
    )
    engine.materialise(
        "identity_candidate_edges",
        f"""
        select * from (
            select p.record_id_l, p.record_id_r, p.match_probability, 'splink' as rule
            from {scored} as p
            join {table} as l on l.record_id = p.record_id_l
            join {table} as r on r.record_id = p.record_id_r
            where {_NAMES_AGREE} or {_ANOTHER_IDENTIFIER_AGREES}
        ) as scored
        {keep}
        union all
        select * from ({_certain_pairs(table)}) as certain
        {keep}
        """,
    )
    engine.materialise("identity_edges", _weak_records_link_once(table, touching))
    return "identity_edges"


# A shared number alone never links two different names. Families share a phone, and
# Fellegi–Sunter, which takes fields as independent, lets one agreeing phone outweigh
# names that clearly differ; so a scored pair whose names disagree also needs an e-mail,
# id card or member number in common.
_NAMES_AGREE = """(
    l.name_norm is null or r.name_norm is null
    or l.name_norm = r.name_norm or l.name_key = r.name_key
    or (char_levenshtein(l.name_norm, r.name_norm) <= 1
        and least(length(l.name_norm), length(r.name_norm)) >= 3
        and levenshtein(l.name_key, r.name_key) <= 1)
)"""
_ANOTHER_IDENTIFIER_AGREES = (
    "(l.email = r.email or l.id_card = r.id_card or l.member_no = r.member_no)"
)


def _weak_records_link_once(table: str, touching: str | None) -> str:
    """Keep every edge, except that a weak record (nothing but a name, city, address or
    gender: no phone, e-mail, id card, member number or birth date) keeps only its best
    edge, and in incremental linking only while it is new. Two people of one name in one
    city both match such a record; linking it to both would merge them through it."""
    new_only = (
        "" if touching is None else f"and ends.record_id in (select record_id from {touching})"
    )
    # Weak records are flagged by joins, not `not in (select …)`: Spark plans a NOT IN whose
    # columns may be null as a nested-loop join (every edge against every weak record), which
    # did not finish in 22 minutes at 1M customers. Record ids are never null, so a join says
    # the same thing and both engines hash it.
    return f"""
        with
        weak as (
            select record_id from {table}
            where phone is null and email is null and id_card is null
                and member_no is null and birth_date is null
        ),
        flagged as (
            select e.record_id_l, e.record_id_r, e.match_probability, e.rule,
                weak_l.record_id is not null as weak_l,
                weak_r.record_id is not null as weak_r
            from identity_candidate_edges as e
            left join weak as weak_l on weak_l.record_id = e.record_id_l
            left join weak as weak_r on weak_r.record_id = e.record_id_r
        ),
        ends as (
            select record_id_l as record_id, record_id_r as other_id, match_probability,
                weak_l as is_weak, weak_r as other_is_weak
            from flagged
            union all
            select record_id_r, record_id_l, match_probability, weak_r, weak_l from flagged
        ),
        best_of_weak as (
            select record_id, other_id from (
                select ends.record_id, ends.other_id, row_number() over (
                    partition by ends.record_id
                    order by ends.match_probability desc, ends.other_is_weak, ends.other_id
                ) as rank
                from ends
                where ends.is_weak {new_only}
            ) as ranked where rank = 1
        )
        select e.record_id_l, e.record_id_r, e.match_probability, e.rule from flagged as e
        left join best_of_weak as best_l
            on best_l.record_id = e.record_id_l and best_l.other_id = e.record_id_r
        left join best_of_weak as best_r
            on best_r.record_id = e.record_id_r and best_r.other_id = e.record_id_l
        where (not e.weak_l or best_l.record_id is not null)
            and (not e.weak_r or best_r.record_id is not null)
    """


def _certain_pairs(table: str) -> str:
    """Pairs no model is needed for: one member number, one id card, or one mobile number
    under one name (unless another identifier on the two records disagrees: a family may
    give two members one name). Each group links to its smallest record (a star)."""
    rules = {
        "same member number": (["member_no"], []),
        "same id card": (["id_card"], []),
        "same phone and name": (["phone", "name_norm"], ["email", "id_card", "birth_date"]),
    }
    selects = []
    for rule, (columns, must_agree) in rules.items():
        filled = " and ".join(f"{c} is not null" for c in columns)
        partition = ", ".join(columns)
        agree = "".join(
            f" and (first.{c} is null or grouped.{c} is null or first.{c} = grouped.{c})"
            for c in must_agree
        )
        selects.append(
            f"""
            select grouped.first_id as record_id_l, grouped.record_id as record_id_r,
                   1.0::double as match_probability, '{rule}' as rule
            from (
                select *, min(record_id) over (partition by {partition}) as first_id
                from {table} where {filled}
            ) as grouped
            join {table} as first on first.record_id = grouped.first_id
            where grouped.record_id <> grouped.first_id{agree}
            """
        )
    return " union all ".join(selects)


def term_frequency_tables(
    conn: duckdb.DuckDBPyConnection, table: str, model: IdentityModel
) -> dict[str, pa.Table]:
    """How often each value of the model's frequency-adjusted columns occurs in `table`."""
    return {
        column: conn.sql(
            f"""
            select {column}, count(*) / sum(count(*)) over () as tf_{column}
            from {table} where {column} is not null group by {column}
            """
        ).to_arrow_table()
        for column in _tf_columns(model)
    }


def _tf_columns(model: IdentityModel) -> list[str]:
    columns = []
    for comparison in model.splink_settings.get("comparisons", []):
        for level in comparison.get("comparison_levels", []):
            column = level.get("tf_adjustment_column")
            if column and column not in columns:
                columns.append(column)
    return columns


def cluster(
    engine: SplinkEngine,
    nodes: str,
    edges: str,
    model: IdentityModel,
    *,
    threshold: float | None = None,
    node_id: str = "record_id",
) -> str:
    """Connected components of the edges at the threshold: `(record_id, cluster_id)`."""
    cut = model.threshold if threshold is None else threshold
    db_api = engine.api()
    clusters = cluster_pairwise_predictions_at_threshold(
        db_api.register(nodes),
        db_api.register(edges),
        db_api,
        node_id_column_name=node_id,
        edge_id_column_name_left="record_id_l",
        edge_id_column_name_right="record_id_r",
        threshold_match_probability=cut,
    )
    engine.materialise(
        "identity_clusters", f"select {node_id}, cluster_id from {clusters.physical_name}"
    )
    return "identity_clusters"
