"""Deterministic demo sources of a Chinese consumer business, with ground truth.

`generate()` writes a window of days of activity for `customers` true people; `append_day()`
adds the next day (new activity, order status changes and refunds, ticket resolutions) so
incremental runs can be exercised. Both stream people in blocks, so a million fit in memory.
"""

from __future__ import annotations

import json
import random
from dataclasses import asdict, dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path

import numpy as np

from crm_warehouse.generate import pools, sales_db, variants
from crm_warehouse.generate.people import People, Window, blocks, draw_people
from crm_warehouse.generate.writers import LineFiles, TruthTables, csv_line, json_line

DEFAULT_END = date(2026, 10, 31)
BAD_ROW_RATE = 0.005
# A planted "future" date: far enough ahead that no real clock reaches it soon.
FUTURE = datetime(2031, 6, 1, 10, 0, 0)
OVERSIZE = "非常满意，" * 1000

FORM_CSV_HEADER = [
    "提交编号",
    "表单名称",
    "姓名",
    "手机",
    "邮箱",
    "城市",
    "提交时间",
    "来源渠道",
    "同意营销",
    "留言",
]
CALL_HEADER = [
    "call_id",
    "caller_number",
    "agent_id",
    "queue",
    "direction",
    "queued_at",
    "answered_at",
    "ended_at",
    "outcome",
]
CAMPAIGN_HEADER = [
    "campaign_id",
    "campaign_name",
    "channel",
    "start_date",
    "end_date",
    "cost",
    "target_segment",
]
TOUCH_HEADER = [
    "touch_id",
    "campaign_id",
    "member_no",
    "contact",
    "sent_at",
    "opened_at",
    "clicked_at",
    "converted_at",
]
ORDER_CHANNELS = ["门店", "天猫", "京东", "小程序"]


@dataclass
class Counters:
    """Next free ids, so ids stay unique and deterministic across blocks and appended days."""

    submission: int = 1
    call: int = 1
    ticket: int = 1
    order: int = 1
    order_line: int = 1
    touch: int = 1


@dataclass
class Manifest:
    seed: int
    customers: int
    first_day: str
    last_day: str
    base_last_day: str
    bad_row_rate: float = BAD_ROW_RATE
    appended_days: list[str] = field(default_factory=list)
    counters: Counters = field(default_factory=Counters)
    campaigns: list[dict[str, object]] = field(default_factory=list)

    @classmethod
    def load(cls, path: Path) -> Manifest:
        data = json.loads(path.read_text(encoding="utf-8"))
        data["counters"] = Counters(**data["counters"])
        return cls(**data)

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(asdict(self), ensure_ascii=False), encoding="utf-8")

    @property
    def window(self) -> Window:
        return Window(date.fromisoformat(self.first_day), date.fromisoformat(self.base_last_day))


def manifest_path(sources_dir: Path) -> Path:
    return sources_dir / "_truth" / "manifest.json"


def generate(
    sources_dir: Path,
    customers: int = 10_000,
    days: int = 90,
    seed: int = 42,
    end: date = DEFAULT_END,
    bad_row_rate: float = BAD_ROW_RATE,
) -> Manifest:
    """Write `days` days of sources for `customers` people into an empty `sources_dir`.

    About `bad_row_rate` of the rows of every source are planted defects, each recorded in
    `_truth/bad_rows.csv` with its kind.
    """
    if customers < 1 or days < 1:
        raise ValueError("customers and days must be at least 1")
    if manifest_path(sources_dir).exists():
        raise FileExistsError(
            f"{sources_dir} already holds generated sources; use a fresh CRM_HOME or --append-day"
        )
    window = Window(end - timedelta(days=days - 1), end)
    manifest = Manifest(
        seed=seed,
        customers=customers,
        bad_row_rate=bad_row_rate,
        first_day=window.first.isoformat(),
        last_day=end.isoformat(),
        base_last_day=end.isoformat(),
    )
    manifest.campaigns = _campaigns(seed, window)
    run = _Run(sources_dir, manifest)
    run.write_products()
    run.write_campaigns()
    for block, count in blocks(customers):
        people = draw_people(seed, block, count, window)
        run.write_people_truth(people)
        run.activity(people, window, random.Random(f"{seed}/{block}/base"))
        run.flush()
    run.close()
    manifest.save(manifest_path(sources_dir))
    return manifest


def append_day(sources_dir: Path, new_customer_share: float = 0.003) -> Manifest:
    """Add the day after the last generated one: new activity, updates and a few new people."""
    path = manifest_path(sources_dir)
    if not path.exists():
        raise FileNotFoundError(f"{sources_dir} has no generated sources to append to")
    manifest = Manifest.load(path)
    day = date.fromisoformat(manifest.last_day) + timedelta(days=1)
    window = manifest.window
    old_customers = manifest.customers
    manifest.customers = old_customers + max(1, round(old_customers * new_customer_share))
    run = _Run(sources_dir, manifest)
    new_campaign = _campaign_starting(manifest.seed, day, len(manifest.campaigns))
    if new_campaign is not None:
        manifest.campaigns.append(new_campaign)
        run.write_campaigns()
    for block, count in blocks(manifest.customers):
        people = draw_people(manifest.seed, block, count, window)
        first_new = old_customers - people.first_index
        if first_new < count:
            for i in range(max(first_new, 0), count):
                people.registered_on[i] = day
            run.write_people_truth(people, start=max(first_new, 0))
        rnd = random.Random(f"{manifest.seed}/{block}/{day.isoformat()}")
        run.activity(people, Window(day, day), rnd)
        run.flush()
    run.update_sales_system(day, random.Random(f"{manifest.seed}/updates/{day.isoformat()}"))
    run.resolve_open_tickets(day, random.Random(f"{manifest.seed}/tickets/{day.isoformat()}"))
    run.close()
    manifest.last_day = day.isoformat()
    manifest.appended_days.append(day.isoformat())
    manifest.save(path)
    return manifest


def _campaigns(seed: int, window: Window) -> list[dict[str, object]]:
    campaigns = []
    day = window.first
    while day <= window.last:
        campaign = _campaign_starting(seed, day, len(campaigns), every=1)
        if campaign is not None:
            campaigns.append(campaign)
        day += timedelta(days=7)
    return campaigns


def _campaign_starting(
    seed: int, day: date, number: int, every: int = 7
) -> dict[str, object] | None:
    """The campaign that starts on `day`, if one does (one in `every` days on average)."""
    rnd = random.Random(f"{seed}/campaign/{day.isoformat()}")
    if every > 1 and rnd.random() >= 1 / every:
        return None
    theme = rnd.choice(pools.CAMPAIGN_THEMES)
    return {
        "campaign_id": f"CMP{number + 1:04d}",
        "campaign_name": f"{day.month}月{theme}",
        "channel": rnd.choice(pools.CAMPAIGN_CHANNELS),
        "start_date": day.isoformat(),
        "end_date": (day + timedelta(days=rnd.randint(3, 14))).isoformat(),
        "cost": round(rnd.uniform(2_000, 80_000), 2),
        "target_segment": rnd.choice(pools.TARGET_SEGMENTS),
        "reach_share": round(rnd.uniform(0.03, 0.12), 3),
    }


def _at(day: date, rnd: random.Random, earliest_hour: int = 8, latest_hour: int = 22) -> datetime:
    seconds = rnd.randint(earliest_hour * 3600, latest_hour * 3600 - 1)
    return datetime(day.year, day.month, day.day) + timedelta(seconds=seconds)


def _fmt(moment: datetime | None) -> str:
    return "" if moment is None else moment.strftime("%Y-%m-%d %H:%M:%S")


def _poisson_days(rnd: random.Random, rate: float, first: date, last: date) -> list[date]:
    span = (last - first).days + 1
    if span <= 0 or rate <= 0:
        return []
    count = int(np.random.default_rng(rnd.getrandbits(64)).poisson(rate * span))
    return sorted(first + timedelta(days=rnd.randrange(span)) for _ in range(count))


class _Run:
    """One generator pass: files, truth and the sales database shared by all blocks."""

    def __init__(self, sources_dir: Path, manifest: Manifest) -> None:
        self.dir = sources_dir
        self.manifest = manifest
        self.files = LineFiles(sources_dir)
        self.truth = TruthTables(sources_dir / "_truth")
        self.sales = sales_db.connect(sources_dir / "sales" / "sales.db")
        self.products = [
            (row[0], row[1]) for row in self.sales.execute("select id, list_price from products")
        ]
        # Appended days rewrite the campaign snapshot; its drafts were recorded the first time.
        self._campaign_drafts_recorded = manifest_path(sources_dir).exists()
        # The last good line of each file: a planted duplicate repeats one of those.
        self._last_good: dict[Path, bytes] = {}
        self._kind_turns: dict[tuple[str, ...], int] = {}
        self._pending: dict[str, list[tuple[object, ...]]] = {
            "customers": [],
            "orders": [],
            "order_lines": [],
        }

    # ----- shared pieces -------------------------------------------------------------------

    def write_products(self) -> None:
        rnd = random.Random(f"{self.manifest.seed}/products")
        rows, product_id = [], 1
        for category, items, low, high in pools.PRODUCT_CATEGORIES:
            for item in items:
                for edition in ("标准版", "升级版", "礼盒装"):
                    price = round(rnd.uniform(low, high), 2)
                    rows.append(
                        (
                            product_id,
                            f"SKU{product_id:05d}",
                            f"{item}（{edition}）",
                            category,
                            price,
                            f"{self.manifest.first_day} 00:00:00",
                        )
                    )
                    product_id += 1
        sales_db.insert(self.sales, "products", sales_db.PRODUCT_COLUMNS, rows)
        self.sales.commit()
        self.products = [(row[0], row[4]) for row in rows]

    def write_campaigns(self) -> None:
        """Campaign definitions are a full snapshot, rewritten whenever one is added."""
        path = self.dir / "campaigns" / "campaigns.csv"
        path.parent.mkdir(parents=True, exist_ok=True)
        lines = [csv_line(CAMPAIGN_HEADER)]
        lines += [
            csv_line([str(c[column]) for column in CAMPAIGN_HEADER])
            for c in self.manifest.campaigns
        ]
        # Two drafts someone saved into the export: a negative budget and a day that does not
        # exist. Nobody was sent them, so quarantining them loses no touch.
        drafts = [
            ["CMP9001", "草稿：预算待定", "短信", "2026-09-01", "2026-09-05", "-5000", "全部会员"],
            ["CMP9002", "草稿：日期待定", "微信", "2026-09-31", "2026-10-05", "1000", "新客户"],
        ]
        for draft, kind in zip(drafts, ["negative_cost", "unparseable_date"], strict=True):
            lines.append(csv_line(draft))
            if not self._campaign_drafts_recorded:
                self.truth.add(
                    "bad_rows.csv",
                    ["campaigns", "campaigns/campaigns.csv", len(lines), draft[0], kind],
                )
        path.write_text("".join(lines), encoding="utf-8")

    def write_people_truth(self, people: People, start: int = 0) -> None:
        for i in range(start, len(people)):
            self.truth.add(
                "people.csv",
                [
                    people.person_id[i],
                    people.name[i],
                    people.gender[i],
                    people.birthday[i],
                    pools.CITIES[people.city[i]][0],
                    people.mobile[i],
                    people.second_mobile[i],
                    people.phone_changed_on[i],
                    None
                    if people.shares_phone_of[i] is None
                    else f"P{people.shares_phone_of[i]:08d}",
                    people.email[i],
                    bool(people.is_member[i]),
                    people.registered_on[i],
                    people.churned_on[i],
                    people.complaints_from[i],
                ],
            )

    def _bad(self, rnd: random.Random) -> bool:
        return rnd.random() < self.manifest.bad_row_rate

    def _next_kind(self, kinds: list[str]) -> str:
        """Defects of a row type take turns, so even a small sample has every kind."""
        key = tuple(kinds)
        turn = self._kind_turns.get(key, 0)
        self._kind_turns[key] = turn + 1
        return kinds[turn % len(kinds)]

    def _record_bad(self, source: str, path: Path | str, line: int, key: object, kind: str) -> None:
        relative = path.relative_to(self.dir).as_posix() if isinstance(path, Path) else path
        self.truth.add("bad_rows.csv", [source, relative, line, key, kind])

    # ----- activity ------------------------------------------------------------------------

    def activity(self, people: People, window: Window, rnd: random.Random) -> None:
        for i in range(len(people)):
            if people.registered_on[i] > window.last:
                continue
            active_from = max(window.first, people.registered_on[i])
            if people.is_member[i]:
                self._sales_customer(people, i, rnd, window)
            if people.has_forms[i]:
                for day in _poisson_days(rnd, 1.3 / 90, window.first, window.last):
                    self._form(people, i, day, rnd)
            if people.is_caller[i]:
                for day in _poisson_days(rnd, 2.0 / 90, window.first, window.last):
                    self._call(people, i, day, rnd, complaint=False)
            complaints_from = people.complaints_from[i]
            if complaints_from is not None and complaints_from <= window.last:
                for day in _poisson_days(
                    rnd, 0.12, max(complaints_from, window.first), window.last
                ):
                    self._call(people, i, day, rnd, complaint=True)
            if people.is_member[i]:
                churned = people.churned_on[i]
                last_order_day = (
                    window.last
                    if churned is None
                    else min(window.last, churned - timedelta(days=1))
                )
                for day in _poisson_days(
                    rnd, float(people.order_rate[i]), active_from, last_order_day
                ):
                    self._order(people, i, day, rnd, window)
        # Callers we cannot tie to anyone: wrong numbers, unregistered prospects.
        for day in _poisson_days(rnd, len(people) * 0.02 / 90, window.first, window.last):
            self._anonymous_call(day, rnd)
        for campaign in self.manifest.campaigns:
            start = date.fromisoformat(str(campaign["start_date"]))
            if window.first <= start <= window.last:
                self._touches(people, campaign, start, rnd)

    def _sales_customer(self, people: People, i: int, rnd: random.Random, window: Window) -> None:
        person = people.person_id[i]
        appending = window.first > self.manifest.window.last
        if appending and people.registered_on[i] != window.first:
            return  # an existing member: already in the sales system
        customer_id = _sales_customer_id(people, i)
        member_no = _member_no(customer_id)
        changed = people.phone_changed_on[i]
        as_of = window.last
        registered = _at(people.registered_on[i], rnd)
        updated = (
            _at(changed, rnd) if changed and registered.date() < changed <= as_of else (registered)
        )
        row: list[object] = [
            customer_id,
            member_no,
            variants.name(
                rnd,
                people.surname[i],
                people.given[i],
                people.pinyin_surname[i],
                people.pinyin_given[i],
                exact_share=0.95,
            ),
            people.phone_on(i, as_of)
            if rnd.random() < 0.8
            else variants.phone(rnd, people.phone_on(i, as_of)),
            variants.email(rnd, people.email[i]),
            variants.city(rnd, int(people.city[i])),
            people.birthday[i].isoformat() if rnd.random() < 0.9 else None,
            "女" if people.gender[i] == "F" else "男",
            _fmt(registered),
            pools.MEMBERSHIP_LEVELS[people.membership_level[i]][0],
            pools.CUSTOMER_TYPES[people.customer_type[i]][0],
            _fmt(updated),
        ]
        if self._bad(rnd):
            kind = self._next_kind(["control_chars", "unparseable_date"])
            if kind == "control_chars":
                row[2] = f"{people.surname[i]}\x07\x1b{people.given[i]}"
            else:
                row[6] = "1990-13-45"
            self._record_bad("sales_customers", "sales.customers", customer_id, member_no, kind)
        self.truth.add("records.csv", ["sales_customers", member_no, person])
        self._pending["customers"].append(tuple(row))

    def _form(self, people: People, i: int, day: date, rnd: random.Random) -> None:
        counters = self.manifest.counters
        submission_id = f"F{counters.submission:09d}"
        counters.submission += 1
        moment = _at(day, rnd, 7, 24)
        phone = variants.phone(rnd, people.phone_on(i, day)) if rnd.random() < 0.92 else ""
        fields = {
            "id": submission_id,
            "form": rnd.choice(pools.FORM_NAMES),
            "name": variants.name(
                rnd,
                people.surname[i],
                people.given[i],
                people.pinyin_surname[i],
                people.pinyin_given[i],
            ),
            "mobile": phone,
            "email": variants.email(rnd, people.email[i]) if rnd.random() < 0.8 else None,
            "city": variants.city(rnd, int(people.city[i])) if rnd.random() < 0.85 else None,
            "channel": rnd.choices(
                [c for c, _ in pools.FORM_CHANNELS], [w for _, w in pools.FORM_CHANNELS]
            )[0],
            "consent_marketing": rnd.random() < 0.6,
            "message": rnd.choice(pools.FORM_MESSAGES),
        }
        self.truth.add("records.csv", ["forms", submission_id, people.person_id[i]])
        if rnd.random() < 0.6:
            self._form_json(fields, moment, day, rnd)
        else:
            self._form_csv(fields, moment, day, rnd)

    def _form_json(
        self, fields: dict[str, object], moment: datetime, day: date, rnd: random.Random
    ) -> None:
        path = self.dir / "forms" / f"submissions_{day.isoformat()}.jsonl"
        record = dict(fields)
        record["submitted_at"] = moment.strftime("%Y-%m-%dT%H:%M:%S+08:00")
        kind = None
        if self._bad(rnd):
            kind = self._next_kind(
                [
                    "malformed_json",
                    "future_date",
                    "unparseable_date",
                    "control_chars",
                    "oversize_field",
                    "duplicate_id",
                    "missing_contact",
                ]
            )
        if kind == "duplicate_id":
            previous = self._last_good.get(path)
            if previous is None:
                kind = None
            else:
                line = self.files.append(path, previous)
                self._record_bad("forms", path, line, _json_id(previous), kind)
        if kind == "future_date":
            record["submitted_at"] = FUTURE.strftime("%Y-%m-%dT%H:%M:%S+08:00")
        elif kind == "unparseable_date":
            record["submitted_at"] = "昨天下午三点"
        elif kind == "control_chars":
            record["name"] = f"{record['name']}\x00\x08"
        elif kind == "oversize_field":
            record["message"] = OVERSIZE
        elif kind == "missing_contact":
            record["name"], record["mobile"], record["email"] = "", "", None
        encoded = json_line(record)
        if kind == "malformed_json":
            # Cut on a character boundary: the line is broken JSON, not broken UTF-8.
            text = encoded.decode()
            encoded = text[: len(text) // 2].encode() + b"\n"
        line = self.files.append(path, encoded)
        if kind is not None and kind != "duplicate_id":
            self._record_bad("forms", path, line, record["id"], kind)
        else:
            self._last_good[path] = encoded

    def _form_csv(
        self, fields: dict[str, object], moment: datetime, day: date, rnd: random.Random
    ) -> None:
        path = self.dir / "forms" / f"export_{day.strftime('%Y%m%d')}.csv"
        header = csv_line(FORM_CSV_HEADER).encode("gbk")
        row = [
            str(fields["id"]),
            str(fields["form"]),
            str(fields["name"]),
            str(fields["mobile"]),
            fields["email"] or "",
            fields["city"] or "",
            f"{moment.year}/{moment.month}/{moment.day} {moment.hour}:{moment.minute:02d}",
            str(fields["channel"]),
            "是" if fields["consent_marketing"] else "否",
            str(fields["message"]),
        ]
        kind = None
        if self._bad(rnd):
            kind = self._next_kind(
                [
                    "undecodable_bytes",
                    "wrong_column_count",
                    "unparseable_date",
                    "future_date",
                    "control_chars",
                    "duplicate_id",
                ]
            )
        if kind == "duplicate_id":
            previous = self._last_good.get(path)
            if previous is None:
                kind = None
            else:
                line = self.files.append(path, previous, header)
                self._record_bad("forms", path, line, previous.split(b",")[0].decode(), kind)
        if kind == "unparseable_date":
            row[6] = "2026/02/30 25:61"
        elif kind == "future_date":
            row[6] = FUTURE.strftime("%Y/%m/%d %H:%M")
        elif kind == "control_chars":
            row[2] = f"{row[2]}\x1b[0m"
        elif kind == "wrong_column_count":
            row = row[:-3]
        encoded = csv_line(row).encode("gbk")
        if kind == "undecodable_bytes":
            encoded = encoded.replace(b",", b",\xff\xfe", 3).replace(b",\xff\xfe", b",", 2)
        line = self.files.append(path, encoded, header)
        if kind is not None and kind != "duplicate_id":
            self._record_bad("forms", path, line, row[0], kind)
        else:
            self._last_good[path] = encoded

    def _call(self, people: People, i: int, day: date, rnd: random.Random, complaint: bool) -> None:
        number = (
            variants.phone(rnd, people.phone_on(i, day))
            if rnd.random() < 0.4
            else (people.phone_on(i, day))
        )
        queue = "投诉建议" if complaint else rnd.choice(pools.CALL_QUEUES[:3])
        call_id = self._write_call(number, queue, day, rnd)
        self.truth.add("records.csv", ["calls", call_id, people.person_id[i]])
        if complaint or rnd.random() < 0.35:
            self._ticket(people, i, day, rnd, complaint)

    def _anonymous_call(self, day: date, rnd: random.Random) -> None:
        number = f"1{rnd.choice('3578')}{rnd.randrange(10**9):09d}"
        call_id = self._write_call(number, rnd.choice(pools.CALL_QUEUES[:2]), day, rnd)
        self.truth.add("records.csv", ["calls", call_id, ""])

    def _write_call(self, number: str, queue: str, day: date, rnd: random.Random) -> str:
        counters = self.manifest.counters
        call_id = f"C{counters.call:010d}"
        counters.call += 1
        queued = _at(day, rnd, 8, 21)
        abandoned = rnd.random() < 0.08
        answered = None if abandoned else queued + timedelta(seconds=int(rnd.expovariate(1 / 25)))
        ended = (answered or queued) + timedelta(
            seconds=int(rnd.expovariate(1 / 240)) + 5 if answered else rnd.randint(5, 90)
        )
        outcome = (
            "abandoned"
            if abandoned
            else rnd.choices(
                pools.CALL_OUTCOMES,
                [0.7, 0.12, 0.1, 0.08] if queue != "投诉建议" else [0.3, 0.2, 0.2, 0.3],
            )[0]
        )
        row = [
            call_id,
            number,
            f"A{rnd.randint(1, 40):03d}",
            queue,
            "inbound" if rnd.random() < 0.85 else "outbound",
            _fmt(queued),
            _fmt(answered),
            _fmt(ended),
            outcome,
        ]
        path = self.dir / "callcentre" / f"calls_{day.isoformat()}.csv"
        header = csv_line(CALL_HEADER).encode()
        kind = None
        if self._bad(rnd):
            kind = self._next_kind(
                [
                    "wrong_column_count",
                    "undecodable_bytes",
                    "unparseable_date",
                    "future_date",
                    "time_order",
                    "duplicate_id",
                ]
            )
        if kind == "duplicate_id":
            previous = self._last_good.get(path)
            if previous is None:
                kind = None
            else:
                line = self.files.append(path, previous, header)
                self._record_bad("calls", path, line, previous.split(b",")[0].decode(), kind)
        if kind == "wrong_column_count":
            row = [*row, "extra"]
        elif kind == "unparseable_date":
            row[5] = "13/45/2026 10:00"
        elif kind == "future_date":
            row[5] = _fmt(FUTURE)
        elif kind == "time_order":
            row[7] = _fmt(queued - timedelta(hours=1))
        encoded = csv_line(row).encode()
        if kind == "undecodable_bytes":
            encoded = encoded.replace(b",", b",\xc3\x28", 1)
        line = self.files.append(path, encoded, header)
        if kind is not None and kind != "duplicate_id":
            self._record_bad("calls", path, line, call_id, kind)
        else:
            self._last_good[path] = encoded
        return call_id

    def _ticket(
        self, people: People, i: int, day: date, rnd: random.Random, complaint: bool
    ) -> None:
        counters = self.manifest.counters
        ticket_id = f"T{counters.ticket:09d}"
        counters.ticket += 1
        category = "投诉" if complaint else rnd.choice(pools.TICKET_CATEGORIES[:5])
        opened = _at(day, rnd, 8, 21)
        first_response = opened + timedelta(minutes=int(rnd.expovariate(1 / 90)) + 1)
        still_open = rnd.random() < (0.35 if complaint else 0.1)
        resolved = (
            None
            if still_open
            else first_response + timedelta(hours=int(rnd.expovariate(1 / 20)) + 1)
        )
        is_member = bool(people.is_member[i])
        record: dict[str, object] = {
            "ticket_id": ticket_id,
            "member_no": _member_no(_sales_customer_id(people, i))
            if is_member and rnd.random() < 0.6
            else None,
            "contact_phone": variants.phone(rnd, people.phone_on(i, day)),
            "customer_name": variants.name(
                rnd,
                people.surname[i],
                people.given[i],
                people.pinyin_surname[i],
                people.pinyin_given[i],
                exact_share=0.7,
            ),
            "category": category,
            "is_complaint": complaint,
            "status": "open" if still_open else "resolved",
            "opened_at": _fmt(opened),
            "first_response_at": _fmt(first_response),
            "resolved_at": _fmt(resolved) or None,
            "satisfaction": None
            if resolved is None or rnd.random() < 0.3
            else (rnd.choice([1, 2, 2, 3]) if complaint else rnd.choice([3, 4, 4, 5, 5, 5])),
            "description": pools.TICKET_TEXTS[category],
            "updated_at": _fmt(resolved or first_response),
        }
        self.truth.add("records.csv", ["tickets", ticket_id, people.person_id[i]])
        self._write_ticket(record, rnd)

    def _write_ticket(self, record: dict[str, object], rnd: random.Random) -> None:
        path = self.dir / "callcentre" / "tickets.jsonl"
        kind = None
        if self._bad(rnd):
            kind = self._next_kind(
                [
                    "malformed_json",
                    "future_date",
                    "satisfaction_out_of_range",
                    "non_numeric_satisfaction",
                    "oversize_field",
                ]
            )
        if kind == "future_date":
            record["opened_at"] = _fmt(FUTURE)
        elif kind == "satisfaction_out_of_range":
            record["satisfaction"] = 7
        elif kind == "non_numeric_satisfaction":
            record["satisfaction"] = "很满意"
        elif kind == "oversize_field":
            record["description"] = OVERSIZE
        encoded = json_line(record)
        if kind == "malformed_json":
            encoded = encoded.replace(b'"category"', b"category", 1)
        line = self.files.append(path, encoded)
        if kind is not None:
            self._record_bad("tickets", path, line, record["ticket_id"], kind)
        elif record["status"] == "open":
            open_path = self.dir / "_truth" / "open_tickets.jsonl"
            self.files.append(open_path, encoded)

    def _order(self, people: People, i: int, day: date, rnd: random.Random, window: Window) -> None:
        counters = self.manifest.counters
        order_id = counters.order
        counters.order += 1
        customer_id = _sales_customer_id(people, i)
        ordered = _at(day, rnd, 0, 24)
        age = (window.last - day).days
        if age < 3:
            status = rnd.choice(["paid", "shipped"])
        else:
            status = rnd.choices(["completed", "refunded", "cancelled"], [0.9, 0.05, 0.05])[0]
        updated = ordered if age < 3 or status == "cancelled" else ordered + timedelta(days=2)
        total = 0.0
        for _ in range(rnd.choice([1, 1, 1, 2, 2, 3])):
            product_id, price = self.products[rnd.randrange(len(self.products))]
            quantity = rnd.choice([1, 1, 1, 2, 3])
            amount = round(price * quantity, 2)
            total += amount
            line_row: list[object] = [
                counters.order_line,
                order_id,
                product_id,
                quantity,
                price,
                amount,
                _fmt(updated),
            ]
            if self._bad(rnd):
                kind = self._next_kind(["negative_quantity", "non_numeric_amount"])
                if kind == "negative_quantity":
                    line_row[3] = -quantity
                else:
                    line_row[5] = "壹佰元"
                self._record_bad(
                    "sales_order_lines",
                    "sales.order_lines",
                    counters.order_line,
                    counters.order_line,
                    kind,
                )
            self._pending["order_lines"].append(tuple(line_row))
            counters.order_line += 1
        row: list[object] = [
            order_id,
            f"SO{day.strftime('%Y%m%d')}{order_id:08d}",
            customer_id,
            _fmt(ordered),
            status,
            rnd.choice(ORDER_CHANNELS),
            round(total, 2),
            _fmt(updated),
        ]
        if self._bad(rnd):
            kind = self._next_kind(
                [
                    "negative_amount",
                    "non_numeric_amount",
                    "unknown_customer",
                    "future_date",
                    "unparseable_date",
                ]
            )
            if kind == "negative_amount":
                row[6] = -row[6]
            elif kind == "non_numeric_amount":
                row[6] = "N/A"
            elif kind == "unknown_customer":
                row[2] = 90_000_000 + order_id
            elif kind == "future_date":
                row[3] = _fmt(FUTURE)
            else:
                row[3] = f"{day.year}-02-30 10:00:00"
            self._record_bad("sales_orders", "sales.orders", order_id, row[1], kind)
        self._pending["orders"].append(tuple(row))

    def _touches(
        self, people: People, campaign: dict[str, object], start: date, rnd: random.Random
    ) -> None:
        path = self.dir / "campaigns" / f"touches_{start.isoformat()}.csv"
        header = csv_line(TOUCH_HEADER).encode()
        counters = self.manifest.counters
        share = float(campaign["reach_share"])  # type: ignore[arg-type]
        by_email = campaign["channel"] == "邮件"
        for i in range(len(people)):
            if not people.is_member[i] or rnd.random() >= share:
                continue
            if by_email and people.email[i] is None:
                continue
            touch_id = f"TC{counters.touch:010d}"
            counters.touch += 1
            sent = _at(start, rnd, 9, 20)
            opened = sent + timedelta(minutes=rnd.randint(1, 600)) if rnd.random() < 0.35 else None
            clicked = (
                opened + timedelta(minutes=rnd.randint(1, 30))
                if opened and rnd.random() < 0.3
                else None
            )
            converted = (
                clicked + timedelta(hours=rnd.randint(1, 48))
                if clicked and rnd.random() < 0.25
                else None
            )
            row = [
                touch_id,
                str(campaign["campaign_id"]),
                _member_no(_sales_customer_id(people, i)),
                people.email[i] if by_email else people.phone_on(i, start),
                _fmt(sent),
                _fmt(opened),
                _fmt(clicked),
                _fmt(converted),
            ]
            kind = None
            if self._bad(rnd):
                kind = self._next_kind(["unknown_campaign", "unparseable_date"])
                if kind == "unknown_campaign":
                    row[1] = "CMP9999"
                else:
                    row[4] = "2026-13-01 09:00:00"
            line = self.files.append(path, csv_line(row).encode(), header)
            if kind is not None:
                self._record_bad("campaign_touches", path, line, touch_id, kind)
            self.truth.add("records.csv", ["campaign_touches", touch_id, people.person_id[i]])

    # ----- appended-day updates ------------------------------------------------------------

    def update_sales_system(self, day: date, rnd: random.Random) -> None:
        """Orders move on (shipped, completed, refunded) and some members change level."""
        stamp = _fmt(_at(day, rnd, 9, 18))
        moving = self.sales.execute(
            "select id, status from orders where status in ('paid', 'shipped') order by id"
        ).fetchall()
        for order_id, status in moving:
            draw = rnd.random()
            if draw < 0.5:
                new_status = "shipped" if status == "paid" else "completed"
            elif draw < 0.56:
                new_status = "refunded"
            else:
                continue
            self.sales.execute(
                "update orders set status = ?, updated_at = ? where id = ?",
                (new_status, stamp, order_id),
            )
        members = self.sales.execute("select id from customers order by id").fetchall()
        levels = [level for level, _ in pools.MEMBERSHIP_LEVELS]
        for (customer_id,) in members:
            if rnd.random() < 0.002:
                self.sales.execute(
                    "update customers set membership_level = ?, updated_at = ? where id = ?",
                    (rnd.choice(levels), stamp, customer_id),
                )
        self.sales.commit()

    def resolve_open_tickets(self, day: date, rnd: random.Random) -> None:
        """Some open tickets are resolved today: the ticket log gets their new version."""
        open_path = self.dir / "_truth" / "open_tickets.jsonl"
        if not open_path.exists():
            return
        still_open: list[bytes] = []
        for raw in open_path.read_bytes().splitlines(keepends=True):
            record = json.loads(raw)
            if rnd.random() < 0.3:
                opened = datetime.fromisoformat(record["opened_at"])
                resolved = max(_at(day, rnd, 9, 20), opened + timedelta(minutes=30))
                record.update(
                    status="resolved",
                    resolved_at=_fmt(resolved),
                    satisfaction=rnd.choice([1, 2, 3, 4, 5]),
                    updated_at=_fmt(resolved),
                )
                self.files.append(self.dir / "callcentre" / "tickets.jsonl", json_line(record))
            else:
                still_open.append(raw)
        self.files.flush()
        open_path.write_bytes(b"".join(still_open))

    # ----- flushing ------------------------------------------------------------------------

    def flush(self) -> None:
        self.files.flush()
        self.truth.flush()
        sales_db.insert(
            self.sales, "customers", sales_db.CUSTOMER_COLUMNS, self._pending["customers"]
        )
        sales_db.insert(self.sales, "orders", sales_db.ORDER_COLUMNS, self._pending["orders"])
        sales_db.insert(
            self.sales, "order_lines", sales_db.ORDER_LINE_COLUMNS, self._pending["order_lines"]
        )
        self.sales.commit()
        for rows in self._pending.values():
            rows.clear()

    def close(self) -> None:
        self.flush()
        self.sales.close()


def _sales_customer_id(people: People, i: int) -> int:
    """The sales system's key of a member: derived, so no run needs a map of everyone."""
    return people.first_index + i + 1


def _member_no(customer_id: int) -> str:
    return f"M{customer_id + 10_000_000:08d}"


def _json_id(line: bytes) -> str:
    """The `id` of a JSON line the generator wrote itself (used to label duplicates)."""
    return str(json.loads(line)["id"])
