"""Point-in-time churn features and labels, read from the warehouse at a cutoff date.

Every feature at cutoff `c` uses only rows dated on or before `c` (orders by the day they
were placed, calls by the day they were queued, complaints by the day they were opened and,
for "unresolved", resolved after `c` or not at all), so a model trained at an old cutoff never
sees its own future. The label of cutoff `c` is whether the customer placed no order in the
`window_days` after it.

Each feature carries the words a business user reads when it is a reason for a customer's
risk: `FEATURES[name].reason_zh.format(value=…)`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

import duckdb
import pandas as pd

from ml.sql import query_for


@dataclass(frozen=True)
class Feature:
    name: str
    description: str
    reason_zh: str
    reason_en: str
    # +1: risk can only rise with the value, -1: only fall (LightGBM's monotone constraints,
    # so a reason always reads the way a person expects); 0: context the model may use either
    # way but that no one reads as a reason to leave (a high average order, say).
    risk_direction: int = 0
    # A reason is shown only past this value in the risky direction ("0 abandoned calls" is
    # never a reason); None: whenever the feature raises the risk.
    reason_beyond: float | None = None


FEATURES: dict[str, Feature] = {
    feature.name: feature
    for feature in (
        Feature(
            "days_since_last_order",
            "Days from the customer's last order to the cutoff.",
            "{value}天未购买",
            "no purchase in {value} days",
            risk_direction=1,
            reason_beyond=0,
        ),
        Feature(
            "gap_overdue_ratio",
            "Days since the last order divided by the customer's usual gap between orders "
            "(empty with fewer than two orders).",
            "已超过平常购买间隔的{value}倍",
            "{value}× past their usual gap between orders",
            risk_direction=1,
            reason_beyond=1.0,
        ),
        Feature(
            "orders_30d",
            "Orders in the 30 days up to the cutoff.",
            "近30天购买{value}次",
            "{value} orders in the last 30 days",
            risk_direction=-1,
        ),
        Feature(
            "orders_change_30d",
            "Orders in the last 30 days minus orders in the 30 days before them.",
            "购买次数比上月变化{value}",
            "orders changed by {value} against the month before",
            risk_direction=-1,
            reason_beyond=0,
        ),
        Feature(
            "orders_90d",
            "Orders in the 90 days up to the cutoff.",
            "近90天购买{value}次",
            "{value} orders in the last 90 days",
            risk_direction=-1,
        ),
        Feature(
            "lifetime_orders",
            "Orders up to the cutoff.",
            "累计购买{value}次",
            "{value} orders in all",
            risk_direction=-1,
        ),
        Feature(
            "spend_90d",
            "Spend (yuan) in the 90 days up to the cutoff.",
            "近90天消费¥{value}",
            "spent ¥{value} in the last 90 days",
            risk_direction=-1,
        ),
        Feature(
            "average_order_value",
            "Mean order amount (yuan) up to the cutoff.",
            "平均客单价¥{value}",
            "average order ¥{value}",
        ),
        Feature(
            "tenure_days",
            "Days the customer has been known (registration, first form or ticket, or first "
            "order, whichever came first) up to the cutoff.",
            "成为客户{value}天",
            "a customer for {value} days",
        ),
        Feature(
            "complaints_30d",
            "Complaint tickets opened in the 30 days up to the cutoff.",
            "近30天投诉{value}次",
            "{value} complaints in the last 30 days",
            risk_direction=1,
            reason_beyond=0,
        ),
        Feature(
            "unresolved_complaints",
            "Complaints opened by the cutoff and not resolved by it.",
            "{value}个投诉未解决",
            "{value} unresolved complaint(s)",
            risk_direction=1,
            reason_beyond=0,
        ),
        Feature(
            "calls_30d",
            "Calls to the service centre in the 30 days up to the cutoff.",
            "近30天来电{value}次",
            "{value} calls to the service centre in 30 days",
        ),
        Feature(
            "abandoned_calls_30d",
            "Of those calls, the ones abandoned before an agent answered.",
            "近30天{value}次来电未接通",
            "{value} calls abandoned unanswered in 30 days",
            risk_direction=1,
            reason_beyond=0,
        ),
        Feature(
            "campaign_touches_30d",
            "Campaign messages sent to the customer in the 30 days up to the cutoff.",
            "近30天收到{value}次营销",
            "{value} campaign messages in 30 days",
        ),
    )
}
FEATURE_NAMES: list[str] = list(FEATURES)

_FEATURES_SQL = """
with
orders as (
    select customer_id, ordered_on, order_amount
    from intermediate.int_sales__customer_orders
    where not is_reversed and ordered_on <= $cutoff
),
order_history as (
    select
        customer_id,
        count(*) as lifetime_orders,
        min(ordered_on) as first_order_on,
        max(ordered_on) as last_order_on,
        count(distinct ordered_on) as order_days,
        count(*) filter (where ordered_on > $month_before) as orders_30d,
        count(*) filter (where ordered_on > $two_months_before and ordered_on <= $month_before)
            as orders_prior_30d,
        count(*) filter (where ordered_on > $quarter_before) as orders_90d,
        coalesce(sum(order_amount) filter (where ordered_on > $quarter_before), 0) as spend_90d,
        avg(order_amount) as average_order_value
    from orders
    group by customer_id
),
complaints as (
    select
        record_customers.customer_id,
        count(*) filter (where tickets.opened_on > $month_before) as complaints_30d,
        count(*) filter (
            where tickets.resolved_at is null or cast(tickets.resolved_at as date) > $cutoff
        ) as unresolved_complaints
    from intermediate.int_callcentre__ticket_origins as tickets
    inner join intermediate.int_identity__record_customers as record_customers
        on record_customers.source = 'tickets' and record_customers.source_key = tickets.ticket_id
    where tickets.is_complaint and tickets.opened_on <= $cutoff
    group by record_customers.customer_id
),
calls as (
    select
        call_customers.customer_id,
        count(*) as calls_30d,
        count(*) filter (where calls.is_abandoned) as abandoned_calls_30d
    from marts.fct_calls as calls
    inner join intermediate.int_callcentre__call_customers as call_customers
        on calls.call_id = call_customers.call_id
    where calls.call_date <= $cutoff and calls.call_date > $month_before
        and call_customers.customer_id is not null
    group by call_customers.customer_id
),
touches as (
    select customer_id, count(*) as campaign_touches_30d
    from intermediate.int_campaigns__touch_customers
    where cast(sent_at as date) <= $cutoff and cast(sent_at as date) > $month_before
    group by customer_id
)
select
    order_history.customer_id,
    cast(date_diff('day', order_history.last_order_on, $cutoff) as double)
        as days_since_last_order,
    case when order_history.order_days > 1 then round(
        cast(date_diff('day', order_history.last_order_on, $cutoff) as double)
        / (cast(date_diff('day', order_history.first_order_on, order_history.last_order_on)
            as double) / (order_history.order_days - 1)), 2)
    end as gap_overdue_ratio,
    cast(order_history.orders_30d as double) as orders_30d,
    cast(order_history.orders_30d - order_history.orders_prior_30d as double)
        as orders_change_30d,
    cast(order_history.orders_90d as double) as orders_90d,
    cast(order_history.lifetime_orders as double) as lifetime_orders,
    round(cast(order_history.spend_90d as double), 2) as spend_90d,
    round(cast(order_history.average_order_value as double), 2) as average_order_value,
    cast(date_diff('day', least(
        order_history.first_order_on,
        coalesce(cast(customers.first_seen_at as date), order_history.first_order_on)
    ), $cutoff) as double) as tenure_days,
    cast(coalesce(complaints.complaints_30d, 0) as double) as complaints_30d,
    cast(coalesce(complaints.unresolved_complaints, 0) as double) as unresolved_complaints,
    cast(coalesce(calls.calls_30d, 0) as double) as calls_30d,
    cast(coalesce(calls.abandoned_calls_30d, 0) as double) as abandoned_calls_30d,
    cast(coalesce(touches.campaign_touches_30d, 0) as double) as campaign_touches_30d
from order_history
left join marts.dim_customers as customers on order_history.customer_id = customers.customer_id
left join complaints on order_history.customer_id = complaints.customer_id
left join calls on order_history.customer_id = calls.customer_id
left join touches on order_history.customer_id = touches.customer_id
order by order_history.customer_id
"""

_LABELS_SQL = """
with
buyers as (
    select distinct customer_id
    from intermediate.int_sales__customer_orders
    where not is_reversed and ordered_on <= $cutoff
),
bought_after as (
    select distinct customer_id
    from intermediate.int_sales__customer_orders
    where not is_reversed and ordered_on > $cutoff and ordered_on <= $window_end
)
select buyers.customer_id, bought_after.customer_id is null as churned
from buyers
left join bought_after on buyers.customer_id = bought_after.customer_id
order by buyers.customer_id
"""


# The input tables of the features and labels (and of lifetime value, which reads the
# orders): what a scoring run must be able to read, on whichever engine.
SCORING_TABLES: list[tuple[str, str]] = [
    ("intermediate", "int_sales__customer_orders"),
    ("intermediate", "int_callcentre__ticket_origins"),
    ("intermediate", "int_callcentre__call_customers"),
    ("intermediate", "int_campaigns__touch_customers"),
    ("intermediate", "int_identity__record_customers"),
    ("marts", "fct_calls"),
    ("marts", "dim_customers"),
]


def _feature_days(cutoff: date) -> dict[str, date]:
    return {
        "cutoff": cutoff,
        "month_before": cutoff - timedelta(days=30),
        "two_months_before": cutoff - timedelta(days=60),
        "quarter_before": cutoff - timedelta(days=90),
    }


def _label_days(cutoff: date, window_days: int) -> dict[str, date]:
    return {"cutoff": cutoff, "window_end": cutoff + timedelta(days=window_days)}


def churn_features(conn: duckdb.DuckDBPyConnection, cutoff: date) -> pd.DataFrame:
    """One row per customer with an order on or before `cutoff`: `customer_id` and the
    columns of `FEATURE_NAMES` (floats; `gap_overdue_ratio` is NaN with one order day)."""
    frame = conn.execute(_FEATURES_SQL, _feature_days(cutoff)).df()
    return frame[["customer_id", *FEATURE_NAMES]]


def churn_labels(conn: duckdb.DuckDBPyConnection, cutoff: date, window_days: int) -> pd.DataFrame:
    """`customer_id`, `churned`: for every customer with an order on or before `cutoff`,
    whether they placed none in the `window_days` after it."""
    return conn.execute(_LABELS_SQL, _label_days(cutoff, window_days)).df()


def churn_features_query(dialect: str, cutoff: date) -> str:
    """The query of `churn_features` in another engine's SQL (`ml.sql.query_for`)."""
    return query_for(dialect, _FEATURES_SQL, dict(_feature_days(cutoff)))


def churn_labels_query(dialect: str, cutoff: date, window_days: int) -> str:
    """The query of `churn_labels` in another engine's SQL."""
    return query_for(dialect, _LABELS_SQL, dict(_label_days(cutoff, window_days)))
