"""The dashboards business users read, as code: datasets over the serving snapshot's `v1_`
views, charts on them, and five dashboards, every title and label in Chinese and English.

Datasets are SQL over the published views only (never the working warehouse); the personal
fields there are already masked. `bundle.py` turns this into Superset's import format.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from ml.features import FEATURES

ChartKind = Literal["big_number", "pie", "bar", "line", "table", "funnel", "heatmap"]


@dataclass(frozen=True)
class Metric:
    name: str
    expression: str
    label: str
    d3format: str | None = None


@dataclass(frozen=True)
class Dataset:
    name: str
    label: str
    sql: str
    time_column: str
    metrics: tuple[Metric, ...]
    column_labels: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Chart:
    key: str
    title: str
    dataset: Dataset
    kind: ChartKind
    metrics: tuple[str, ...]
    dimensions: tuple[str, ...] = ()  # group by; for bar/line/heatmap the first is the x axis
    series: str | None = None  # bar/line: one series per value
    time_grain: str | None = None  # line: P1W, P1M
    row_limit: int = 100
    width: int = 6  # of 12 grid columns
    raw_columns: tuple[str, ...] = ()  # table: rows as they are, no aggregation
    where: str | None = None  # a SQL condition on the dataset's rows
    horizontal: bool = False  # bar: categories down the side, for long labels


@dataclass(frozen=True)
class Filter:
    key: str
    label: str
    kind: Literal["time", "select"]
    dataset: Dataset
    column: str


@dataclass(frozen=True)
class Dashboard:
    slug: str
    title: str
    rows: tuple[tuple[Chart, ...], ...]
    filters: tuple[Filter, ...]
    description: str = ""

    @property
    def charts(self) -> tuple[Chart, ...]:
        return tuple(chart for row in self.rows for chart in row)


def _both(zh: str, en: str) -> str:
    return f"{zh} {en}"


_TIER = "s.value_tier_zh || ' ' || s.value_tier_en"
_COUNT = Metric("customers", "count(distinct customer_id)", _both("客户数", "Customers"), ",d")

CUSTOMERS = Dataset(
    "crm_customers",
    _both("客户", "Customers"),
    f"""
select
    c.customer_id,
    c.city_name,
    c.province_name,
    c.first_seen_at,
    c.last_order_at,
    c.revenue,
    c.order_count,
    {_TIER} as value_tier_label,
    s.lifecycle_stage_zh || ' ' || s.lifecycle_stage_en as lifecycle_label,
    s.rfm_segment_zh || ' ' || s.rfm_segment_en as rfm_label,
    s.recency_score,
    s.frequency_score,
    case s.value_band when 'high' then '高价值 High value' else '低价值 Low value' end
        as value_band_label,
    s.loyalty_level_zh || ' ' || s.loyalty_level_en as loyalty_label,
    s.service_strategy_zh || ' ' || s.service_strategy_en as strategy_label,
    sc.churn_probability,
    coalesce(sc.churn_risk_band_zh || ' ' || sc.churn_risk_band_en, '未评分 Not scored')
        as risk_band_label,
    sc.predicted_clv,
    case
        when sc.predicted_clv is null then '⑥ 无预测 No prediction'
        when sc.predicted_clv < 10000 then '① <1万 元 (<¥10k)'
        when sc.predicted_clv < 30000 then '② 1万–3万 元 (¥10k–30k)'
        when sc.predicted_clv < 60000 then '③ 3万–6万 元 (¥30k–60k)'
        when sc.predicted_clv < 100000 then '④ 6万–10万 元 (¥60k–100k)'
        else '⑤ ≥10万 元 (≥¥100k)'
    end as clv_band,
    sc.next_action_zh || ' ' || sc.next_action_en as next_action_label,
    sc.action_owner_zh || ' ' || sc.action_owner_en as action_owner_label
from main.v1_customer_360 as c
join main.v1_customer_segments as s using (customer_id)
left join main.v1_customer_scores as sc using (customer_id)
""",
    "first_seen_at",
    (
        _COUNT,
        Metric("revenue", "sum(revenue)", _both("销售额", "Revenue"), ",.0f"),
        Metric("average_clv", "avg(predicted_clv)", _both("平均预测CLV", "Average CLV"), ",.0f"),
        Metric(
            "average_churn_risk",
            "avg(churn_probability)",
            _both("平均流失概率", "Average churn risk"),
            ".1%",
        ),
    ),
    {
        "city_name": _both("城市", "City"),
        "value_tier_label": _both("价值等级", "Value tier"),
        "lifecycle_label": _both("生命周期阶段", "Lifecycle stage"),
        "rfm_label": _both("RFM分群", "RFM segment"),
        "recency_score": _both("最近购买得分R", "Recency score"),
        "frequency_score": _both("购买频次得分F", "Frequency score"),
        "value_band_label": _both("价值", "Value"),
        "loyalty_label": _both("忠诚度", "Loyalty"),
        "strategy_label": _both("服务策略", "Service strategy"),
        "risk_band_label": _both("流失风险", "Churn risk"),
        "clv_band": _both("预测CLV区间", "Predicted CLV band"),
        "next_action_label": _both("建议行动", "Next action"),
        "action_owner_label": _both("负责人", "Owner"),
        "first_seen_at": _both("首次出现", "First seen"),
    },
)

CUSTOMER_EVENTS = Dataset(
    "crm_customer_events",
    _both("新增与流失", "New and churned customers"),
    f"""
select c.customer_id, c.city_name, {_TIER} as value_tier_label,
       c.first_seen_at as event_at, '新增 New' as event_label
from main.v1_customer_360 as c
join main.v1_customer_segments as s using (customer_id)
union all
select c.customer_id, c.city_name, {_TIER} as value_tier_label,
       c.last_order_at + interval 90 day as event_at,
       '流失（90天未购） Churned (90 days without an order)' as event_label
from main.v1_customer_360 as c
join main.v1_customer_segments as s using (customer_id)
where c.last_order_at + interval 90 day <= s.as_of_date
""",
    "event_at",
    (_COUNT,),
    {
        "event_at": _both("日期", "Date"),
        "event_label": _both("事件", "Event"),
        "city_name": _both("城市", "City"),
        "value_tier_label": _both("价值等级", "Value tier"),
    },
)


def _reason_labels() -> str:
    """Each churn reason code as words: the reason's own template with N for the figure."""
    cases = "\n".join(
        f"        when '{name}' then "
        f"'{feature.reason_zh.format(value='N')} {feature.reason_en.format(value='N')}'"
        for name, feature in FEATURES.items()
    )
    return f"    case reason_code\n{cases}\n        else reason_code\n    end"


CHURN_REASONS = Dataset(
    "crm_churn_reasons",
    _both("流失原因", "Churn reasons"),
    f"""
select customer_id, city_name, value_tier_label, first_seen_at, risk_band_label,
{_reason_labels()} as reason_label
from (
    select c.customer_id, c.city_name, c.first_seen_at, {_TIER} as value_tier_label,
           sc.churn_risk_band_zh || ' ' || sc.churn_risk_band_en as risk_band_label,
           unnest(string_split(sc.churn_reason_codes, ',')) as reason_code
    from main.v1_customer_scores as sc
    join main.v1_customer_360 as c using (customer_id)
    join main.v1_customer_segments as s using (customer_id)
    where sc.churn_risk_band in ('high', 'medium') and sc.churn_reason_codes <> ''
) as reasons
""",
    "first_seen_at",
    (_COUNT,),
    {
        "reason_label": _both("原因", "Reason"),
        "risk_band_label": _both("流失风险", "Churn risk"),
        "city_name": _both("城市", "City"),
        "value_tier_label": _both("价值等级", "Value tier"),
    },
)

ALERTS = Dataset(
    "crm_alerts",
    _both("客户预警", "Customer alerts"),
    """
select a.alert_date, a.customer_id, a.alert_kind_zh || ' ' || a.alert_kind_en as alert_label,
       a.severity, a.reason, a.suggested_owner, c.city_name,
       s.value_tier_zh || ' ' || s.value_tier_en as value_tier_label,
       a.alert_date = max(a.alert_date) over () as is_latest_day
from main.v1_customer_alerts as a
join main.v1_customer_360 as c using (customer_id)
join main.v1_customer_segments as s using (customer_id)
""",
    "alert_date",
    (Metric("alerts", "count(*)", _both("预警数", "Alerts"), ",d"),),
    {
        "alert_date": _both("预警日期", "Alert date"),
        "alert_label": _both("预警类型", "Alert"),
        "severity": _both("严重程度", "Severity"),
        "reason": _both("原因", "Reason"),
        "suggested_owner": _both("建议负责人", "Suggested owner"),
        "city_name": _both("城市", "City"),
        "value_tier_label": _both("价值等级", "Value tier"),
    },
)

SERVICE = Dataset(
    "crm_service_kpis",
    _both("客服中心指标", "Service centre KPIs"),
    "select * from main.v1_service_kpis_daily",
    "kpi_date",
    (
        Metric("calls_offered", "sum(calls_offered)", _both("来电量", "Calls offered"), ",d"),
        Metric(
            "answer_rate",
            "sum(calls_answered) * 1.0 / nullif(sum(calls_offered), 0)",
            _both("接通率", "Answer rate"),
            ".1%",
        ),
        Metric(
            "service_level",
            "sum(service_level * calls_offered) / nullif(sum(calls_offered), 0)",
            _both("服务水平", "Service level"),
            ".1%",
        ),
        Metric(
            "handle_time",
            "sum(average_handle_time_seconds * calls_answered) / nullif(sum(calls_answered), 0)",
            _both("平均处理时长(秒)", "Average handle time (s)"),
            ",.0f",
        ),
        Metric(
            "fcr",
            "sum(first_contact_resolution_rate * tickets_resolved) "
            "/ nullif(sum(tickets_resolved), 0)",
            _both("首次解决率", "First-contact resolution"),
            ".1%",
        ),
        Metric("complaints", "sum(complaints)", _both("投诉数", "Complaints"), ",d"),
        Metric(
            "csat",
            "sum(csat * csat_responses) / nullif(sum(csat_responses), 0)",
            _both("满意度", "CSAT"),
            ".2f",
        ),
    ),
    {
        "kpi_date": _both("日期", "Date"),
        "queue_name": _both("队列", "Queue"),
        "agent_id": _both("坐席", "Agent"),
    },
)

CAMPAIGNS = Dataset(
    "crm_campaigns",
    _both("营销活动", "Campaigns"),
    "select *, campaign_name || '（' || campaign_id || '）' as campaign_label "
    "from main.v1_campaign_performance",
    "start_date",
    (
        Metric(
            "conversion_rate",
            "sum(converted) * 1.0 / nullif(sum(reached), 0)",
            _both("转化率", "Conversion rate"),
            ".1%",
        ),
        Metric(
            "roi",
            "(sum(attributed_revenue) - sum(campaign_cost)) / nullif(sum(campaign_cost), 0)",
            _both("投资回报率", "ROI"),
            ".1%",
        ),
        Metric("revenue", "sum(attributed_revenue)", _both("归因销售额", "Revenue"), ",.0f"),
        Metric("cost", "sum(campaign_cost)", _both("成本", "Cost"), ",.0f"),
        Metric("reached", "sum(reached)", _both("触达", "Reached"), ",d"),
        Metric("converted", "sum(converted)", _both("转化", "Converted"), ",d"),
    ),
    {
        "campaign_label": _both("活动", "Campaign"),
        "campaign_channel": _both("渠道", "Channel"),
        "start_date": _both("开始日期", "Start date"),
    },
)

CAMPAIGN_FUNNEL = Dataset(
    "crm_campaign_funnel",
    _both("营销漏斗", "Campaign funnel"),
    " union all ".join(
        f"select campaign_id, campaign_channel, start_date, '{label}' as stage_label, "
        f"{column} as people from main.v1_campaign_performance"
        for label, column in (
            ("① 触达 Reached", "reached"),
            ("② 打开 Opened", "opened"),
            ("③ 点击 Clicked", "clicked"),
            ("④ 转化 Converted", "converted"),
        )
    ),
    "start_date",
    (Metric("people", "sum(people)", _both("人数", "People"), ",d"),),
    {
        "stage_label": _both("阶段", "Stage"),
        "campaign_channel": _both("渠道", "Channel"),
        "start_date": _both("开始日期", "Start date"),
    },
)

DATASETS = (
    CUSTOMERS,
    CUSTOMER_EVENTS,
    CHURN_REASONS,
    ALERTS,
    SERVICE,
    CAMPAIGNS,
    CAMPAIGN_FUNNEL,
)


def _customer_filters(slug: str, time_dataset: Dataset) -> tuple[Filter, ...]:
    return (
        Filter(f"{slug}_dates", _both("日期范围", "Date range"), "time", time_dataset, ""),
        Filter(f"{slug}_city", _both("城市", "City"), "select", CUSTOMERS, "city_name"),
        Filter(
            f"{slug}_tier", _both("价值等级", "Value tier"), "select", CUSTOMERS, "value_tier_label"
        ),
    )


CUSTOMER_OVERVIEW = Dashboard(
    "customer-overview",
    _both("客户概览", "Customer overview"),
    (
        (
            Chart(
                "customers_total",
                _both("客户总数", "Customers"),
                CUSTOMERS,
                "big_number",
                ("customers",),
                width=3,
            ),
            Chart(
                "customers_by_tier",
                _both("按价值等级", "By value tier"),
                CUSTOMERS,
                "pie",
                ("customers",),
                ("value_tier_label",),
                width=4,
            ),
            Chart(
                "customers_by_lifecycle",
                _both("按生命周期阶段", "By lifecycle stage"),
                CUSTOMERS,
                "bar",
                ("customers",),
                ("lifecycle_label",),
                width=5,
            ),
        ),
        (
            Chart(
                "customers_by_segment",
                _both("按RFM分群", "By RFM segment"),
                CUSTOMERS,
                "bar",
                ("customers",),
                ("rfm_label",),
                width=6,
                horizontal=True,
            ),
            Chart(
                "customers_by_city",
                _both("客户最多的城市", "Top cities"),
                CUSTOMERS,
                "bar",
                ("customers",),
                ("city_name",),
                row_limit=15,
                width=6,
                where="city_name is not null",
                horizontal=True,
            ),
        ),
        (
            Chart(
                "new_vs_churned",
                _both("每月新增与流失", "New vs churned by month"),
                CUSTOMER_EVENTS,
                "line",
                ("customers",),
                ("event_at",),
                series="event_label",
                time_grain="P1M",
                width=12,
            ),
        ),
    ),
    _customer_filters("overview", CUSTOMERS),
)

VALUE_LOYALTY = Dashboard(
    "value-loyalty",
    _both("价值与忠诚度", "Value & loyalty"),
    (
        (
            Chart(
                "value_loyalty_matrix",
                _both("价值×忠诚度矩阵与服务策略", "Value × loyalty matrix and service strategy"),
                CUSTOMERS,
                "table",
                ("customers", "average_clv", "revenue"),
                ("value_band_label", "loyalty_label", "strategy_label"),
                width=12,
            ),
        ),
        (
            Chart(
                "rfm_grid",
                _both("RFM网格（R×F）", "RFM grid (R × F)"),
                CUSTOMERS,
                "heatmap",
                ("customers",),
                ("recency_score", "frequency_score"),
                width=6,
                where="recency_score is not null",
            ),
            Chart(
                "clv_distribution",
                _both("预测CLV分布", "Predicted CLV distribution"),
                CUSTOMERS,
                "bar",
                ("customers",),
                ("clv_band",),
                width=6,
            ),
        ),
    ),
    _customer_filters("value", CUSTOMERS),
)

CHURN_RETENTION = Dashboard(
    "churn-retention",
    _both("流失与挽留", "Churn & retention"),
    (
        (
            Chart(
                "risk_bands",
                _both("流失风险分布", "Churn risk bands"),
                CUSTOMERS,
                "pie",
                ("customers",),
                ("risk_band_label",),
                width=4,
            ),
            Chart(
                "top_reasons",
                _both("主要流失原因（中高风险）", "Top churn reasons (medium and high risk)"),
                CHURN_REASONS,
                "bar",
                ("customers",),
                ("reason_label",),
                row_limit=10,
                width=8,
                horizontal=True,
            ),
        ),
        (
            Chart(
                "next_actions",
                _both("建议行动", "Next actions"),
                CUSTOMERS,
                "table",
                ("customers", "average_churn_risk"),
                ("next_action_label", "action_owner_label"),
                width=6,
            ),
            Chart(
                "alerts_today",
                _both("今日预警", "Alerts of the day"),
                ALERTS,
                "table",
                ("alerts",),
                raw_columns=(
                    "alert_date",
                    "alert_label",
                    "severity",
                    "value_tier_label",
                    "city_name",
                    "reason",
                    "suggested_owner",
                ),
                row_limit=200,
                width=6,
                where="is_latest_day",
            ),
        ),
    ),
    _customer_filters("churn", CUSTOMERS),
)

SERVICE_CENTRE = Dashboard(
    "service-centre",
    _both("客服中心", "Service centre"),
    (
        (
            Chart(
                "service_trend",
                _both("接通率与服务水平（按周）", "Answer rate and service level by week"),
                SERVICE,
                "line",
                ("answer_rate", "service_level", "fcr"),
                ("kpi_date",),
                time_grain="P1W",
                width=8,
            ),
            Chart(
                "calls_total",
                _both("来电总量", "Calls offered"),
                SERVICE,
                "big_number",
                ("calls_offered",),
                width=4,
            ),
        ),
        (
            Chart(
                "by_queue",
                _both("各队列表现", "By queue"),
                SERVICE,
                "table",
                (
                    "calls_offered",
                    "answer_rate",
                    "service_level",
                    "handle_time",
                    "fcr",
                    "complaints",
                    "csat",
                ),
                ("queue_name",),
                width=12,
            ),
        ),
        (
            Chart(
                "complaints_csat",
                _both("投诉与满意度（按周）", "Complaints and CSAT by week"),
                SERVICE,
                "line",
                ("complaints", "csat"),
                ("kpi_date",),
                time_grain="P1W",
                width=6,
            ),
            Chart(
                "by_agent",
                _both("各坐席表现", "By agent"),
                SERVICE,
                "table",
                ("calls_offered", "answer_rate", "handle_time", "fcr", "csat"),
                ("agent_id",),
                row_limit=50,
                width=6,
            ),
        ),
    ),
    (
        Filter("service_dates", _both("日期范围", "Date range"), "time", SERVICE, ""),
        Filter("service_queue", _both("队列", "Queue"), "select", SERVICE, "queue_name"),
    ),
)

CAMPAIGN_PERFORMANCE = Dashboard(
    "campaigns",
    _both("营销活动", "Campaigns"),
    (
        (
            Chart(
                "funnel",
                _both("营销漏斗", "Funnel"),
                CAMPAIGN_FUNNEL,
                "funnel",
                ("people",),
                ("stage_label",),
                width=5,
            ),
            Chart(
                "roi_by_channel",
                _both("各渠道投资回报率", "ROI by channel"),
                CAMPAIGNS,
                "bar",
                ("roi", "conversion_rate"),
                ("campaign_channel",),
                width=7,
            ),
        ),
        (
            Chart(
                "by_campaign",
                _both("各活动转化与回报", "Conversion and ROI by campaign"),
                CAMPAIGNS,
                "table",
                ("reached", "converted", "conversion_rate", "revenue", "cost", "roi"),
                ("campaign_label", "campaign_channel"),
                width=12,
            ),
        ),
    ),
    (
        Filter("campaign_dates", _both("日期范围", "Date range"), "time", CAMPAIGNS, ""),
        Filter(
            "campaign_channel", _both("渠道", "Channel"), "select", CAMPAIGNS, "campaign_channel"
        ),
    ),
)

DASHBOARDS = (
    CUSTOMER_OVERVIEW,
    VALUE_LOYALTY,
    CHURN_RETENTION,
    SERVICE_CENTRE,
    CAMPAIGN_PERFORMANCE,
)
