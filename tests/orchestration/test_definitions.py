"""The Dagster definitions load, have the committed asset keys and the lineage the UI shows."""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from crm_warehouse.settings import Settings
from orchestration.build import build_definitions

ASSET_KEYS_FILE = Path(__file__).with_name("asset_keys.txt")


def test_definitions_load(crm_home: Settings) -> None:
    dg.Definitions.validate_loadable(build_definitions(crm_home))


def test_asset_keys_are_the_committed_ones(crm_home: Settings) -> None:
    keys = sorted(k.to_user_string() for k in build_definitions(crm_home).resolve_all_asset_keys())
    assert keys == ASSET_KEYS_FILE.read_text(encoding="utf-8").split()


def test_lineage_runs_from_sources_through_raw_to_staging(crm_home: Settings) -> None:
    graph = build_definitions(crm_home).resolve_asset_graph()

    def parents(key: str) -> set[str]:
        return {
            p.to_user_string() for p in graph.get(dg.AssetKey.from_user_string(key)).parent_keys
        }

    assert parents("raw/calls") == {"sources/callcentre"}
    assert "raw/calls" in parents("staging/stg_callcentre__calls")
    assert "raw/sales_orders" in parents("staging/stg_sales__orders")
    assert "raw/campaigns" in parents("raw/campaign_touches")
    assert {"raw/form_submissions", "staging/stg_reference__city_names"} <= parents(
        "staging/stg_forms__submissions"
    )


def test_every_raw_asset_has_a_blocking_reconciliation_check(crm_home: Settings) -> None:
    definitions = build_definitions(crm_home)
    checked = {
        key.asset_key.to_user_string()
        for check in definitions.asset_checks or []
        for key in check.check_keys
        if key.name == "rows_reconcile"
    }
    raw = {k.to_user_string() for k in definitions.resolve_all_asset_keys() if k.path[0] == "raw"}
    assert raw == checked


def test_scoring_sits_between_the_marts_and_the_scored_marts(crm_home: Settings) -> None:
    graph = build_definitions(crm_home).resolve_asset_graph()

    def parents(key: str) -> set[str]:
        return {
            p.to_user_string() for p in graph.get(dg.AssetKey.from_user_string(key)).parent_keys
        }

    assert {"marts/fct_calls", "intermediate/int_sales__customer_orders"} <= parents(
        "ml/churn_scores"
    )
    assert {"ml/churn_scores", "ml/customer_clv", "marts/customer_segments"} <= parents(
        "marts/customer_scores"
    )
    assert "ml/customer_clv" in parents("marts/customer_segments")
