"""Where a person's rows are, table by table: the erasure map.

Every table in the warehouse and in a serving snapshot must be named here, either with the
columns that tie a row to a person or as holding no personal data; erasure refuses to run on a
warehouse with a table it does not know, so a new model cannot silently keep someone.
"""

from __future__ import annotations

from crm_warehouse.erasure.footprint import CUSTOMER, RECORD

# (SQL expression over the row, footprint kind): a row is the person's when any matches.
Rule = tuple[tuple[str, str], ...]

_BY_CUSTOMER: Rule = (("customer_id", CUSTOMER),)
_BY_CUSTOMER_CHANGE: Rule = (("old_customer_id", CUSTOMER), ("new_customer_id", CUSTOMER))

WAREHOUSE_RULES: dict[str, Rule] = {
    # raw: the loaded rows of each source
    "form_submissions": (("submission_id", "form"),),
    "calls": (("call_id", "call"),),
    "tickets": (("ticket_id", "ticket"),),
    "campaign_touches": (("touch_id", "touch"),),
    "sales_customers": (("id", "sales_customer"),),
    "sales_orders": (("id", "sales_order"),),
    "sales_order_lines": (("order_id", "sales_order"),),
    # identity resolution's state
    "records": (("customer_id", CUSTOMER), ("record_id", RECORD)),
    "customers": _BY_CUSTOMER,
    "customer_id_history": _BY_CUSTOMER_CHANGE,
    # staging and snapshots
    "stg_forms__submissions": (("submission_id", "form"),),
    "stg_callcentre__calls": (("call_id", "call"),),
    "stg_callcentre__tickets": (("ticket_id", "ticket"),),
    "stg_campaigns__touches": (("touch_id", "touch"),),
    "stg_sales__customers": (("sales_customer_id", "sales_customer"),),
    "stg_sales__orders": (("order_id", "sales_order"),),
    "stg_sales__order_lines": (("order_id", "sales_order"),),
    "snap_sales__membership_levels": (("sales_customer_id", "sales_customer"),),
    # the same history on Spark (dbt-spark snapshots only into Delta, Iceberg or Hudi)
    "int_sales__membership_level_history": (("sales_customer_id", "sales_customer"),),
    # intermediate
    "int_callcentre__call_customers": (("call_id", "call"), ("customer_id", CUSTOMER)),
    "int_callcentre__ticket_origins": (("ticket_id", "ticket"), ("origin_call_id", "call")),
    "int_campaigns__touch_customers": (("touch_id", "touch"), ("customer_id", CUSTOMER)),
    "int_identity__record_customers": (("record_id", RECORD), ("customer_id", CUSTOMER)),
    "int_identity__records": (("source || ':' || source_key", RECORD),),
    "int_sales__customer_orders": (("order_id", "sales_order"), ("customer_id", CUSTOMER)),
    "int_sales__membership_changes": (
        ("sales_customer_id", "sales_customer"),
        ("customer_id", CUSTOMER),
    ),
    # marts
    "dim_customers": _BY_CUSTOMER,
    "dim_customer_id_map": (("customer_id", CUSTOMER), ("current_customer_id", CUSTOMER)),
    "customer_360": _BY_CUSTOMER,
    "customer_care_list": _BY_CUSTOMER,
    "customer_scores": _BY_CUSTOMER,
    "customer_segments": _BY_CUSTOMER,
    "fct_customer_alerts": _BY_CUSTOMER,
    "fct_customer_id_history": _BY_CUSTOMER_CHANGE,
    "fct_calls": (("call_id", "call"),),
    "fct_campaign_touches": (("touch_id", "touch"),),
    "fct_orders": (("order_id", "sales_order"), ("sales_customer_id", "sales_customer")),
    # scores
    "churn_scores": _BY_CUSTOMER,
    "customer_clv": _BY_CUSTOMER,
}

# Rows with no person in them: definitions, ledgers and aggregates over many people.
WAREHOUSE_WITHOUT_PERSONAL_DATA = frozenset(
    {
        "campaigns",
        "sales_products",
        "runs",
        "stg_campaigns__campaigns",
        "stg_sales__products",
        "stg_reference__city_names",
        "fct_campaign_performance",
        "fct_service_kpis_daily",
        "batches",
        "loaded_files",
        "watermarks",
        "model_runs",
        "gate_history",
        # dbt seeds: reference data
        "china_cities",
        "city_aliases",
        "identity_source_priority",
        "next_action_rules",
        "product_category_margins",
        "rfm_segment_grid",
        "segment_labels",
        "value_loyalty_strategy",
    }
)

# Quarantined rows are matched on their key and on the identifiers in their payload.
QUARANTINE_TABLE = "rejected_rows"
QUARANTINE_KEY_KINDS = {
    "forms": "form",
    "calls": "call",
    "tickets": "ticket",
    "campaign_touches": "touch",
    "sales_customers": "sales_customer",
    "sales_orders": "sales_order",
}

SERVING_RULES: dict[str, Rule] = {
    "customer_360": _BY_CUSTOMER,
    "customer_alerts": _BY_CUSTOMER,
    "customer_care_list": _BY_CUSTOMER,
    "customer_id_map": (("customer_id", CUSTOMER), ("current_customer_id", CUSTOMER)),
    "customer_scores": _BY_CUSTOMER,
    "customer_segments": _BY_CUSTOMER,
}
SERVING_WITHOUT_PERSONAL_DATA = frozenset({"campaign_performance", "service_kpis_daily"})
