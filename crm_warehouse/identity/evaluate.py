"""How good the identity step is, measured against the generator's ground truth.

For benchmarks and tests only: the pipeline never reads `sources/_truth/`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import duckdb


@dataclass(frozen=True)
class LinkQuality:
    """Pairwise scores: a pair of records is linked when both have one customer_id, truly
    linked when both are one person."""

    records: int
    customers_found: int
    people_true: int
    pairs_linked: int
    pairs_true: int
    pairs_correct: int
    precision: float
    recall: float
    f1: float

    def as_dict(self) -> dict[str, float | int]:
        return asdict(self)


def link_quality(conn: duckdb.DuckDBPyConnection, truth_dir: Path) -> LinkQuality:
    """Score `identity.records` against `truth_dir/records.csv` (records the truth ties to
    no one, like anonymous callers, are not resolved records and do not count)."""
    truth = (truth_dir / "records.csv").as_posix()
    row = conn.execute(
        """
        with truth as (
            select source || ':' || record_key as record_id, person_id
            from read_csv(?, header = true, all_varchar = true)
            where person_id is not null and person_id <> ''
        ),
        joined as (
            select r.customer_id, t.person_id
            from identity.records as r join truth as t using (record_id)
        ),
        cells as (select count(*) as n from joined group by customer_id, person_id),
        found as (select count(*) as n from joined group by customer_id),
        true_people as (select count(*) as n from joined group by person_id)
        select
            (select count(*) from joined),
            (select count(*) from found),
            (select count(*) from true_people),
            (select coalesce(sum(n * (n - 1) / 2), 0) from found),
            (select coalesce(sum(n * (n - 1) / 2), 0) from true_people),
            (select coalesce(sum(n * (n - 1) / 2), 0) from cells)
        """,
        [truth],
    ).fetchall()[0]
    records, found, people, linked, true_pairs, correct = (int(v) for v in row)
    precision = correct / linked if linked else 1.0
    recall = correct / true_pairs if true_pairs else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return LinkQuality(
        records=records,
        customers_found=found,
        people_true=people,
        pairs_linked=linked,
        pairs_true=true_pairs,
        pairs_correct=correct,
        precision=round(precision, 5),
        recall=round(recall, 5),
        f1=round(f1, 5),
    )


def snapshot_ids(conn: duckdb.DuckDBPyConnection) -> dict[str, str]:
    """record_id → customer_id now, to compare with after a later run."""
    return dict(conn.execute("select record_id, customer_id from identity.records").fetchall())


def id_stability(before: dict[str, str], conn: duckdb.DuckDBPyConnection) -> dict[str, float]:
    """Share of the customers in `before` whose id did not change: every record they had
    still carries their id. A merge into an older id counts as a change for the younger."""
    after = snapshot_ids(conn)
    changed: set[str] = set()
    for record_id, customer_id in before.items():
        if after.get(record_id) != customer_id:
            changed.add(customer_id)
    customers = set(before.values())
    stable = len(customers) - len(changed)
    return {
        "customers_before": len(customers),
        "customers_changed": len(changed),
        "stability": round(stable / len(customers), 6) if customers else 1.0,
    }
