"""The dashboards spec as a Superset import bundle: YAML files keyed by stable UUIDs, zipped.

`POST /api/v1/assets/import/` overwrites every object whose UUID it already has, so deploying
the same bundle twice creates nothing, and a changed chart is updated in place. UUIDs are
derived from each object's key, never random.
"""

from __future__ import annotations

import io
import json
import uuid
import zipfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import yaml

from dashboards.spec import DASHBOARDS, DATASETS, Chart, Dashboard, Dataset, Filter

NAMESPACE = uuid.UUID("8a0f6a3e-6c55-4d7e-9a1f-0c2b7e3d5a10")
DATABASE_NAME = "crm_serving"
VERSION = "1.0.0"


def object_uuid(kind: str, key: str) -> str:
    return str(uuid.uuid5(NAMESPACE, f"crm-warehouse/{kind}/{key}"))


def _database(serving_path: Path) -> dict[str, Any]:
    return {
        "database_name": DATABASE_NAME,
        # The symlink, resolved by DuckDB at each connection: a publish is seen at once.
        "sqlalchemy_uri": f"duckdb:///{serving_path.as_posix()}",
        "cache_timeout": None,
        "expose_in_sqllab": True,
        "allow_run_async": False,
        "allow_ctas": False,
        "allow_cvas": False,
        "allow_dml": False,
        "allow_csv_upload": False,
        "impersonate_user": False,
        "extra": {
            "engine_params": {"connect_args": {"read_only": True}},
            "metadata_params": {},
            "schemas_allowed_for_csv_upload": [],
        },
        "uuid": object_uuid("database", DATABASE_NAME),
        "version": VERSION,
    }


def _column_types(conn: duckdb.DuckDBPyConnection, dataset: Dataset) -> list[tuple[str, str]]:
    return [(row[0], row[1]) for row in conn.execute(f"describe ({dataset.sql})").fetchall()]


def _dataset(dataset: Dataset, types: list[tuple[str, str]]) -> dict[str, Any]:
    return {
        "table_name": dataset.name,
        "description": dataset.label,
        "main_dttm_col": dataset.time_column,
        "default_endpoint": None,
        "offset": 0,
        "cache_timeout": None,
        "schema": "main",
        "sql": dataset.sql.strip(),
        "params": None,
        "template_params": None,
        "filter_select_enabled": True,
        "fetch_values_predicate": None,
        "extra": None,
        "normalize_columns": False,
        "uuid": object_uuid("dataset", dataset.name),
        "metrics": [
            {
                "metric_name": metric.name,
                "verbose_name": metric.label,
                "metric_type": None,
                "expression": metric.expression,
                "description": None,
                "d3format": metric.d3format,
                "extra": {},
                "warning_text": None,
            }
            for metric in dataset.metrics
        ],
        "columns": [
            {
                "column_name": name,
                "verbose_name": dataset.column_labels.get(name),
                "is_dttm": column_type.startswith(("DATE", "TIMESTAMP")),
                "is_active": True,
                "type": column_type,
                "groupby": True,
                "filterable": True,
                "expression": None,
                "description": None,
                "python_date_format": None,
                "extra": {},
            }
            for name, column_type in types
        ],
        "version": VERSION,
        "database_uuid": object_uuid("database", DATABASE_NAME),
    }


def _axis(chart: Chart) -> dict[str, Any] | str:
    """The first dimension as the query's x axis, bucketed by the time grain if any."""
    column = chart.dimensions[0]
    if chart.time_grain is None:
        return column
    return {
        "timeGrain": chart.time_grain,
        "columnType": "BASE_AXIS",
        "sqlExpression": column,
        "label": column,
        "expressionType": "SQL",
    }


def form_data(chart: Chart) -> dict[str, Any]:
    """The chart's parameters as Superset's explore view keeps them."""
    common: dict[str, Any] = {
        "datasource": "0__table",  # the importer points it at the dataset
        "viz_type": "",
        "adhoc_filters": (
            [{"clause": "WHERE", "expressionType": "SQL", "sqlExpression": chart.where}]
            if chart.where
            else []
        ),
        "row_limit": chart.row_limit,
        "time_range": "No filter",
        "granularity_sqla": chart.dataset.time_column,
        "color_scheme": "supersetColors",
    }
    first = chart.metrics[0] if chart.metrics else None
    match chart.kind:
        case "big_number":
            specific = {
                "viz_type": "big_number_total",
                "metric": first,
                "header_font_size": 0.4,
                "subheader_font_size": 0.15,
                "y_axis_format": "SMART_NUMBER",
            }
        case "pie":
            specific = {
                "viz_type": "pie",
                "groupby": list(chart.dimensions),
                "metric": first,
                "sort_by_metric": True,
                "show_legend": True,
                "legendOrientation": "right",
                "show_labels": True,
                "label_type": "key_percent",
                "donut": True,
                "innerRadius": 35,
                "outerRadius": 70,
            }
        case "bar" | "line":
            specific = {
                "viz_type": "echarts_timeseries_bar"
                if chart.kind == "bar"
                else "echarts_timeseries_line",
                "x_axis": chart.dimensions[0],
                "metrics": list(chart.metrics),
                "groupby": [chart.series] if chart.series else [],
                "show_legend": True,
                "rich_tooltip": True,
                "orientation": "horizontal" if chart.horizontal else "vertical",
                "x_axis_sort_asc": True,
                "truncate_metric": True,
                "y_axis_format": "SMART_NUMBER",
            }
            if chart.time_grain:
                specific["time_grain_sqla"] = chart.time_grain
                specific["x_axis_time_format"] = "smart_date"
                specific["markerEnabled"] = True
        case "table":
            raw = bool(chart.raw_columns)
            specific = {
                "viz_type": "table",
                "query_mode": "raw" if raw else "aggregate",
                "groupby": [] if raw else list(chart.dimensions),
                "metrics": [] if raw else list(chart.metrics),
                "all_columns": list(chart.raw_columns),
                "order_desc": True,
                "show_cell_bars": True,
                "table_timestamp_format": "%Y-%m-%d",
                "server_page_length": 20,
            }
        case "funnel":
            specific = {
                "viz_type": "funnel",
                "groupby": list(chart.dimensions),
                "metric": first,
                "sort_by_metric": True,
                "show_legend": True,
                "show_labels": True,
                "label_type": "key_value_percent",
            }
        case "heatmap":
            specific = {
                "viz_type": "heatmap_v2",
                "x_axis": chart.dimensions[0],
                "groupby": chart.dimensions[1],
                "metric": first,
                "normalize_across": "heatmap",
                "linear_color_scheme": "blue_white_yellow",
                "show_values": True,
                "show_legend": True,
                "sort_x_axis": "alpha_asc",
                "sort_y_axis": "alpha_asc",
                "y_axis_format": "SMART_NUMBER",
            }
    return {**common, **specific}


def query_context(chart: Chart) -> dict[str, Any]:
    """What `/api/v1/chart/<id>/data/` runs: the chart's query without the browser's
    post-processing."""
    if chart.raw_columns:
        columns: list[Any] = list(chart.raw_columns)
        metrics: list[str] = []
        orderby: list[Any] = [[chart.raw_columns[0], False]]
    else:
        columns = list(chart.dimensions)
        if chart.kind in ("bar", "line", "heatmap") and chart.dimensions:
            columns[0] = _axis(chart)
        if chart.series:
            columns.append(chart.series)
        metrics = list(chart.metrics)
        orderby = [] if chart.time_grain else [[chart.metrics[0], False]]
    query = {
        "filters": [],
        "extras": {"having": "", "where": chart.where or ""},
        "applied_time_extras": {},
        "columns": columns,
        "metrics": metrics,
        "orderby": orderby,
        "annotation_layers": [],
        "row_limit": chart.row_limit,
        "series_limit": 0,
        "order_desc": True,
        "url_params": {},
        "custom_params": {},
        "custom_form_data": {},
        "time_range": "No filter",
    }
    return {
        "datasource": {"id": 0, "type": "table"},
        "force": False,
        "queries": [query],
        "form_data": form_data(chart),
        "result_format": "json",
        "result_type": "full",
    }


def _chart(chart: Chart) -> dict[str, Any]:
    params = form_data(chart)
    return {
        "slice_name": chart.title,
        "description": None,
        "certified_by": None,
        "certification_details": None,
        "viz_type": params["viz_type"],
        "params": params,
        "query_context": json.dumps(query_context(chart), ensure_ascii=False),
        "cache_timeout": None,
        "uuid": object_uuid("chart", chart.key),
        "version": VERSION,
        "dataset_uuid": object_uuid("dataset", chart.dataset.name),
    }


def _native_filter(item: Filter) -> dict[str, Any]:
    select = item.kind == "select"
    return {
        "id": f"NATIVE_FILTER-{item.key}",
        "name": item.label,
        "filterType": "filter_select" if select else "filter_time",
        "targets": (
            [
                {
                    "datasetUuid": object_uuid("dataset", item.dataset.name),
                    "column": {"name": item.column},
                }
            ]
            if select
            else [{}]
        ),
        "defaultDataMask": {"extraFormData": {}, "filterState": {}, "ownState": {}},
        "controlValues": (
            {
                "enableEmptyFilter": False,
                "multiSelect": True,
                "searchAllOptions": False,
                "inverseSelection": False,
                "defaultToFirstItem": False,
            }
            if select
            else {}
        ),
        "cascadeParentIds": [],
        "scope": {"rootPath": ["ROOT_ID"], "excluded": []},
        "type": "NATIVE_FILTER",
        "description": "",
        "chartsInScope": [],
        "tabsInScope": [],
    }


def _dashboard(dashboard: Dashboard) -> dict[str, Any]:
    position: dict[str, Any] = {
        "DASHBOARD_VERSION_KEY": "v2",
        "ROOT_ID": {"type": "ROOT", "id": "ROOT_ID", "children": ["GRID_ID"]},
        "HEADER_ID": {"id": "HEADER_ID", "type": "HEADER", "meta": {"text": dashboard.title}},
        "GRID_ID": {
            "type": "GRID",
            "id": "GRID_ID",
            "children": [],
            "parents": ["ROOT_ID"],
        },
    }
    for number, row in enumerate(dashboard.rows):
        row_id = f"ROW-{dashboard.slug}-{number}"
        position["GRID_ID"]["children"].append(row_id)
        position[row_id] = {
            "type": "ROW",
            "id": row_id,
            "children": [],
            "parents": ["ROOT_ID", "GRID_ID"],
            "meta": {"background": "BACKGROUND_TRANSPARENT"},
        }
        for chart in row:
            chart_id = f"CHART-{chart.key}"
            position[row_id]["children"].append(chart_id)
            position[chart_id] = {
                "type": "CHART",
                "id": chart_id,
                "children": [],
                "parents": ["ROOT_ID", "GRID_ID", row_id],
                # The UUID ties the slot to its chart; without it an import duplicates charts.
                "meta": {
                    "width": chart.width,
                    "height": 60 if chart.kind == "table" else 50,
                    "chartId": 0,
                    "uuid": object_uuid("chart", chart.key),
                    "sliceName": chart.title,
                },
            }
    return {
        "dashboard_title": dashboard.title,
        "description": dashboard.description or None,
        "css": "",
        "slug": dashboard.slug,
        "uuid": object_uuid("dashboard", dashboard.slug),
        "position": position,
        "metadata": {
            "color_scheme": "supersetColors",
            "refresh_frequency": 0,
            "expanded_slices": {},
            "label_colors": {},
            "timed_refresh_immune_slices": [],
            "cross_filters_enabled": True,
            "default_filters": "{}",
            "chart_configuration": {},
            "native_filter_configuration": [_native_filter(f) for f in dashboard.filters],
        },
        "version": VERSION,
        "published": True,
    }


def build_bundle(serving_path: Path) -> bytes:
    """The zip `POST /api/v1/assets/import/` takes; column types are read from the snapshot."""
    files: dict[str, dict[str, Any]] = {
        "metadata.yaml": {
            "version": VERSION,
            "type": "assets",
            "timestamp": datetime.now(UTC).isoformat(),
        },
        f"databases/{DATABASE_NAME}.yaml": _database(serving_path),
    }
    with duckdb.connect(str(serving_path), read_only=True) as conn:
        for dataset in DATASETS:
            files[f"datasets/{DATABASE_NAME}/{dataset.name}.yaml"] = _dataset(
                dataset, _column_types(conn, dataset)
            )
    for dashboard in DASHBOARDS:
        files[f"dashboards/{dashboard.slug}.yaml"] = _dashboard(dashboard)
        for chart in dashboard.charts:
            files[f"charts/{chart.key}.yaml"] = _chart(chart)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, content in files.items():
            archive.writestr(
                f"crm_dashboards/{name}",
                yaml.safe_dump(content, allow_unicode=True, sort_keys=False),
            )
    return buffer.getvalue()
