"""How well the customer-change alerts and the churn scores find the behaviour the
generator planted.

For benchmarks and tests only: the pipeline never reads `sources/_truth/`. Planted churners
(members who stop buying) should raise a buying alert (frequency drop or inactivity) and a
high churn score; planted complainers (people who start complaining, up to the alert day) a
complaint alert. Spend-per-order drops are not planted, so they are not scored.
"""

from __future__ import annotations

from pathlib import Path

import duckdb
import numpy as np
from sklearn.metrics import roc_auc_score

_KINDS = {
    "churn": ("frequency_drop", "inactive_past_usual_gap"),
    "complaints": ("complaint_spike", "complaint_past_sla"),
}


# Each planted person's main customer_id: the one most of their records resolved to.
_MAIN_CUSTOMER_CTES = """
            truth as (
                select source || ':' || record_key as record_id, person_id
                from read_csv(?, all_varchar = true)
            ),
            person_customers as (
                select t.person_id, r.customer_id, count(*) as records
                from identity.records as r join truth as t using (record_id)
                group by t.person_id, r.customer_id
            ),
            main_customer as (
                select person_id, customer_id from (
                    select *, row_number() over (
                        partition by person_id order by records desc, customer_id
                    ) as rank
                    from person_customers
                ) where rank = 1
            )"""


def planted_churn_auc(
    conn: duckdb.DuckDBPyConnection,
    truth_dir: Path,
    scores: list[tuple[str, float]],
    as_of: object,
) -> dict[str, float]:
    """ROC AUC of churn probabilities (`scores`: customer_id, probability) for telling the
    customers planted to churn on or before `as_of` from the other scored customers."""
    planted = {
        row[0]
        for row in conn.execute(
            f"""
            with {_MAIN_CUSTOMER_CTES}
            select distinct m.customer_id
            from read_csv(?, all_varchar = true) as p
            join main_customer as m using (person_id)
            where p.churned_on is not null and cast(p.churned_on as date) <= cast(? as date)
            """,
            [(truth_dir / "records.csv").as_posix(), (truth_dir / "people.csv").as_posix(), as_of],
        ).fetchall()
    }
    truth = np.array([customer in planted for customer, _ in scores])
    probability = np.array([p for _, p in scores], dtype=float)
    if truth.all() or not truth.any():
        return {"planted_scored": int(truth.sum()), "scored": len(scores), "roc_auc": float("nan")}
    return {
        "planted_scored": int(truth.sum()),
        "scored": len(scores),
        "roc_auc": round(float(roc_auc_score(truth, probability)), 4),
    }


def alert_quality(conn: duckdb.DuckDBPyConnection, truth_dir: Path) -> dict[str, dict[str, float]]:
    """Precision and recall of the latest day's alerts, per planted behaviour."""
    records = (truth_dir / "records.csv").as_posix()
    people = (truth_dir / "people.csv").as_posix()
    figures: dict[str, dict[str, float]] = {}
    for behaviour, kinds in _KINDS.items():
        planted_column = "churned_on" if behaviour == "churn" else "complaints_from"
        alerted, planted, hit = conn.execute(
            f"""
            with latest as (select max(alert_date) as day from marts.fct_customer_alerts),
            {_MAIN_CUSTOMER_CTES},
            planted as (
                select distinct m.customer_id
                from read_csv(?, all_varchar = true) as p
                join main_customer as m using (person_id)
                where p.{planted_column} is not null
                    and cast(p.{planted_column} as date) <= (select day from latest)
            ),
            alerted as (
                select distinct customer_id from marts.fct_customer_alerts
                where alert_kind in ({", ".join(f"'{k}'" for k in kinds)})
                    and alert_date = (select day from latest)
            )
            select
                (select count(*) from alerted),
                (select count(*) from planted),
                (select count(*) from alerted join planted using (customer_id))
            """,
            [records, people],
        ).fetchall()[0]
        figures[behaviour] = {
            "alerted": alerted,
            "planted": planted,
            "found": hit,
            "precision": round(hit / alerted, 4) if alerted else 1.0,
            "recall": round(hit / planted, 4) if planted else 1.0,
        }
    return figures
