"""The contract of every source: its columns, types, limits and keys.

The README's "Bring your own sources" section is written from these definitions: a company's own
exports load if they keep to them. Header names and JSON keys are matched case-insensitively
against each column's aliases, so an export may use the Chinese or the English names.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from crm_warehouse.erasure.keys import KeyKind

ColumnType = Literal["text", "timestamp", "timestamptz", "date", "decimal", "integer", "boolean"]

LOCAL_TIME_FORMATS = (
    "%Y-%m-%d %H:%M:%S",
    "%Y-%m-%d %H:%M",
    "%Y/%m/%d %H:%M:%S",
    "%Y/%m/%d %H:%M",
    "%Y-%m-%dT%H:%M:%S",
)
DATE_FORMATS = ("%Y-%m-%d", "%Y/%m/%d", "%Y%m%d")
TRUE_WORDS = ("true", "t", "1", "yes", "y", "是", "同意")
FALSE_WORDS = ("false", "f", "0", "no", "n", "否", "不同意")


# How far ahead a planned date may lie; later is more likely a typo (2062 for 2026).
PLANNED_DAYS_AHEAD = 366


@dataclass(frozen=True)
class Column:
    name: str
    type: ColumnType = "text"
    aliases: tuple[str, ...] = ()
    required: bool = False
    max_length: int | None = None
    minimum: float | None = None
    maximum: float | None = None
    # A date a source plans ahead (a campaign's start and end): accepted up to this many
    # days after today; any other date or time is quarantined once it is in the future.
    planned_days_ahead: int = 0
    description: str = ""

    @property
    def accepted_names(self) -> tuple[str, ...]:
        return (self.name, *self.aliases)


@dataclass(frozen=True)
class Reference:
    """Rows must point at a row the source system has: one already loaded (or loaded in the
    same batch) or one held in quarantine, which is known but waiting for a fix."""

    column: str
    source: str  # the referenced source, as named in quarantine
    table: str  # raw table holding the referenced key
    key: str


@dataclass(frozen=True)
class SourceContract:
    source: str  # the name used in quarantine, batches and the CLI
    table: str  # raw.<table>
    columns: tuple[Column, ...]
    key: tuple[str, ...]  # what makes a row unique
    key_unique_across_loads: bool = True  # False for snapshots that are reloaded as new versions
    upsert_key: tuple[str, ...] = ()  # rows replace earlier rows with the same upsert key
    references: tuple[Reference, ...] = ()
    at_least_one_of: tuple[str, ...] = ()  # a row needs one of these non-empty
    time_order: tuple[tuple[str, str], ...] = ()  # (earlier, later) pairs
    version_column: str | None = None  # what tells two versions of a key apart
    # (column, kind): the columns that identify a person, which the erasure blocklist matches.
    personal_keys: tuple[tuple[str, KeyKind], ...] = ()
    description: str = ""
    notes: tuple[str, ...] = field(default_factory=tuple)

    def column(self, name: str) -> Column:
        return next(column for column in self.columns if column.name == name)


FORM_SUBMISSIONS = SourceContract(
    personal_keys=(("submission_id", "form"), ("phone", "phone"), ("email", "email")),
    source="forms",
    table="form_submissions",
    description="Web form submissions: the form tool's JSON-lines API dumps and its CSV exports.",
    columns=(
        Column(
            "submission_id",
            aliases=("id", "提交编号"),
            required=True,
            max_length=64,
            description="the form tool's id of the submission",
        ),
        Column("form_name", aliases=("form", "表单名称"), max_length=100),
        Column("name", aliases=("姓名",), max_length=100),
        Column(
            "phone",
            aliases=("mobile", "手机", "电话"),
            max_length=40,
            description="any common spelling: 138…, +86 138-…, 0086 …, full-width digits",
        ),
        Column("email", aliases=("邮箱",), max_length=254),
        Column("city", aliases=("城市",), max_length=100),
        Column(
            "submitted_at",
            "timestamptz",
            aliases=("提交时间",),
            required=True,
            description="ISO 8601 with offset, or local time in the source time zone",
        ),
        Column("channel", aliases=("来源渠道",), max_length=50),
        Column(
            "consent_marketing",
            "boolean",
            aliases=("同意营销",),
            description="true/false, 是/否, yes/no, 1/0",
        ),
        Column("message", aliases=("留言",), max_length=2000),
    ),
    key=("submission_id",),
    at_least_one_of=("name", "phone", "email"),
)

CALLS = SourceContract(
    personal_keys=(("call_id", "call"), ("caller_number", "phone")),
    source="calls",
    table="calls",
    description="Call detail records from the call-centre platform, one file per day.",
    columns=(
        Column("call_id", required=True, max_length=64),
        Column("caller_number", required=True, max_length=40),
        Column("agent_id", max_length=32),
        Column("queue", max_length=50),
        Column("direction", max_length=16),
        Column("queued_at", "timestamp", required=True),
        Column("answered_at", "timestamp", description="empty when the caller hung up first"),
        Column("ended_at", "timestamp", required=True),
        Column("outcome", max_length=32),
    ),
    key=("call_id",),
    time_order=(("queued_at", "answered_at"), ("queued_at", "ended_at")),
)

TICKETS = SourceContract(
    personal_keys=(("ticket_id", "ticket"), ("member_no", "member"), ("contact_phone", "phone")),
    source="tickets",
    table="tickets",
    description=(
        "Service tickets, an append-only JSON-lines log: a ticket's later state is a new line "
        "with the same ticket_id and a later updated_at."
    ),
    columns=(
        Column("ticket_id", required=True, max_length=64),
        Column("member_no", max_length=32),
        Column("contact_phone", max_length=40),
        Column("customer_name", max_length=100),
        Column("category", max_length=50),
        Column("is_complaint", "boolean"),
        Column("status", max_length=32),
        Column("opened_at", "timestamp", required=True),
        Column("first_response_at", "timestamp"),
        Column("resolved_at", "timestamp"),
        Column(
            "satisfaction", "integer", minimum=1, maximum=5, description="1–5, empty when not rated"
        ),
        Column("description", max_length=2000),
        Column("updated_at", "timestamp", required=True),
    ),
    key=("ticket_id", "updated_at"),
    version_column="updated_at",
    time_order=(("opened_at", "first_response_at"), ("opened_at", "resolved_at")),
)

CAMPAIGNS = SourceContract(
    source="campaigns",
    table="campaigns",
    description=(
        "Campaign definitions, a full snapshot file: each changed version is loaded whole and "
        "staging keeps the latest."
    ),
    columns=(
        Column("campaign_id", required=True, max_length=32),
        Column("campaign_name", max_length=200),
        Column("channel", max_length=50),
        # Campaigns are defined ahead of their dates: a running campaign ends in the future.
        Column("start_date", "date", required=True, planned_days_ahead=PLANNED_DAYS_AHEAD),
        Column("end_date", "date", planned_days_ahead=PLANNED_DAYS_AHEAD),
        Column("cost", "decimal", minimum=0),
        Column("target_segment", max_length=100),
    ),
    key=("campaign_id",),
    key_unique_across_loads=False,
    time_order=(("start_date", "end_date"),),
)

CAMPAIGN_TOUCHES = SourceContract(
    personal_keys=(
        ("touch_id", "touch"),
        ("member_no", "member"),
        ("contact", "phone"),
        ("contact", "email"),
    ),
    source="campaign_touches",
    table="campaign_touches",
    description="Campaign touches: one row per message sent, with its opens, clicks, conversions.",
    columns=(
        Column("touch_id", required=True, max_length=64),
        Column("campaign_id", required=True, max_length=32),
        Column("member_no", max_length=32),
        Column("contact", max_length=254),
        Column("sent_at", "timestamp", required=True),
        Column("opened_at", "timestamp"),
        Column("clicked_at", "timestamp"),
        Column("converted_at", "timestamp"),
    ),
    key=("touch_id",),
    references=(Reference("campaign_id", "campaigns", "campaigns", "campaign_id"),),
    time_order=(("sent_at", "opened_at"), ("sent_at", "clicked_at"), ("sent_at", "converted_at")),
)

SALES_CUSTOMERS = SourceContract(
    personal_keys=(
        ("id", "sales_customer"),
        ("member_no", "member"),
        ("phone", "phone"),
        ("email", "email"),
    ),
    source="sales_customers",
    table="sales_customers",
    description="Members in the sales system (OLTP), pulled by updated_at and upserted by id.",
    columns=(
        Column("id", "integer", required=True),
        Column("member_no", required=True, max_length=32),
        Column("name", max_length=100),
        Column("phone", max_length=40),
        Column("email", max_length=254),
        Column("city", max_length=100),
        Column("birthday", "date"),
        Column("gender", max_length=8),
        Column("registered_at", "timestamp"),
        Column("membership_level", max_length=32),
        Column("customer_type", max_length=32),
        Column("updated_at", "timestamp", required=True),
    ),
    key=("id", "updated_at"),
    upsert_key=("id",),
    version_column="updated_at",
)

SALES_PRODUCTS = SourceContract(
    source="sales_products",
    table="sales_products",
    description="Products in the sales system.",
    columns=(
        Column("id", "integer", required=True),
        Column("sku", required=True, max_length=64),
        Column("name", max_length=200),
        Column("category", max_length=64),
        Column("list_price", "decimal", minimum=0),
        Column("updated_at", "timestamp", required=True),
    ),
    key=("id", "updated_at"),
    upsert_key=("id",),
    version_column="updated_at",
)

SALES_ORDERS = SourceContract(
    personal_keys=(("id", "sales_order"), ("customer_id", "sales_customer")),
    source="sales_orders",
    table="sales_orders",
    description="Orders in the sales system; status changes and refunds arrive as updates.",
    columns=(
        Column("id", "integer", required=True),
        Column("order_no", required=True, max_length=64),
        Column("customer_id", "integer", required=True),
        Column("ordered_at", "timestamp", required=True),
        Column("status", max_length=32),
        Column("channel", max_length=32),
        Column("total_amount", "decimal", required=True, minimum=0),
        Column("updated_at", "timestamp", required=True),
    ),
    key=("id", "updated_at"),
    upsert_key=("id",),
    version_column="updated_at",
    references=(Reference("customer_id", "sales_customers", "sales_customers", "id"),),
)

SALES_ORDER_LINES = SourceContract(
    personal_keys=(("order_id", "sales_order"),),
    source="sales_order_lines",
    table="sales_order_lines",
    description="Order lines in the sales system.",
    columns=(
        Column("id", "integer", required=True),
        Column("order_id", "integer", required=True),
        Column("product_id", "integer"),
        Column("quantity", "integer", required=True, minimum=1),
        Column("unit_price", "decimal", minimum=0),
        Column("amount", "decimal", required=True, minimum=0),
        Column("updated_at", "timestamp", required=True),
    ),
    key=("id", "updated_at"),
    upsert_key=("id",),
    version_column="updated_at",
    references=(Reference("order_id", "sales_orders", "sales_orders", "id"),),
)

SALES_CONTRACTS = {
    "customers": SALES_CUSTOMERS,
    "products": SALES_PRODUCTS,
    "orders": SALES_ORDERS,
    "order_lines": SALES_ORDER_LINES,
}

ALL_CONTRACTS = (
    FORM_SUBMISSIONS,
    CALLS,
    TICKETS,
    CAMPAIGNS,
    CAMPAIGN_TOUCHES,
    *SALES_CONTRACTS.values(),
)
