"""The true people behind the demo sources, drawn block by block so a million stream through.

A block's people are a pure function of (seed, block index): `--append-day` redraws exactly the
people the first run drew, without keeping them anywhere.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

import numpy as np

from crm_warehouse.generate import pools

BLOCK_SIZE = 10_000
# Multipliers coprime to 10**8 make the mobile numbers a bijection of the person index.
_MOBILE_MULTIPLIER = 48_271
_SECOND_MOBILE_OFFSET = 50_000_000


@dataclass(frozen=True)
class Window:
    """Inclusive day range of generated activity."""

    first: date
    last: date

    @property
    def days(self) -> int:
        return (self.last - self.first).days + 1


def _weights(values: list[float]) -> np.ndarray:
    array = np.asarray(values, dtype=float)
    return array / array.sum()


_SURNAME_P = _weights([w for _, _, w in pools.SURNAMES])
_CITY_P = _weights([w for *_, w in pools.CITIES])
_LEVEL_P = _weights([w for _, w in pools.MEMBERSHIP_LEVELS])
_TYPE_P = _weights([w for _, w in pools.CUSTOMER_TYPES])
_DOMAIN_P = _weights([w for _, w in pools.EMAIL_DOMAINS])


@dataclass
class People:
    """Column arrays for one block of people (index i is person `first_index + i`)."""

    first_index: int
    person_id: list[str]
    surname: list[str]
    given: list[str]
    name: list[str]
    pinyin_surname: list[str]
    pinyin_given: list[str]
    gender: np.ndarray  # 'M' / 'F'
    birthday: list[date]
    city: np.ndarray  # index into pools.CITIES
    mobile: list[str]
    second_mobile: list[str | None]
    phone_changed_on: list[date | None]
    shares_phone_of: list[int | None]  # global index of the family member whose phone they use
    email: list[str | None]
    is_member: np.ndarray
    registered_on: list[date]
    membership_level: np.ndarray
    customer_type: np.ndarray
    has_forms: np.ndarray
    is_caller: np.ndarray
    order_rate: np.ndarray  # expected orders per day while active
    churned_on: list[date | None]
    complaints_from: list[date | None]

    def __len__(self) -> int:
        return len(self.person_id)

    def phone_on(self, i: int, day: date) -> str:
        """The number person i uses on a given day (a changed number switches on its day)."""
        if self.shares_phone_of[i] is not None:
            return _mobile_for(self.shares_phone_of[i])
        changed = self.phone_changed_on[i]
        if changed is not None and day >= changed:
            return self.second_mobile[i] or self.mobile[i]
        return self.mobile[i]


def _mobile_for(index: int, offset: int = 0) -> str:
    digits = ((index + offset) * _MOBILE_MULTIPLIER + 12_345) % 10**8
    prefix = pools.MOBILE_PREFIXES[(index * 7 + offset) % len(pools.MOBILE_PREFIXES)]
    return f"{prefix}{digits:08d}"


def draw_people(seed: int, block: int, count: int, window: Window) -> People:
    """The first `count` people of block `block`.

    A whole block is always drawn and then cut, so a person's attributes do not depend on how
    many people were asked for: growing the population keeps everyone already drawn.
    """
    people = _draw_block(seed, block, window)
    if count >= BLOCK_SIZE:
        return people
    return People(
        **{
            name: value if name == "first_index" else value[:count]
            for name, value in vars(people).items()
        }
    )


def _draw_block(seed: int, block: int, window: Window) -> People:
    count = BLOCK_SIZE
    rng = np.random.default_rng([seed, 1, block])
    first = block * BLOCK_SIZE
    index = np.arange(first, first + count)

    surname_idx = rng.choice(len(pools.SURNAMES), size=count, p=_SURNAME_P)
    given_len = np.where(rng.random(count) < 0.7, 2, 1)
    given_idx = rng.integers(0, len(pools.GIVEN_CHARS), size=(count, 2))
    gender = np.where(rng.random(count) < 0.5, "F", "M")
    birth_offset = rng.integers(0, 50 * 365, size=count)
    city = rng.choice(len(pools.CITIES), size=count, p=_CITY_P)
    has_email = rng.random(count) < 0.7
    domain = rng.choice(len(pools.EMAIL_DOMAINS), size=count, p=_DOMAIN_P)
    is_member = rng.random(count) < 0.75
    registered_before = rng.random(count) < 0.7
    registered_offset = rng.integers(0, 3 * 365, size=count)
    in_window_offset = rng.integers(0, window.days, size=count)
    level = rng.choice(len(pools.MEMBERSHIP_LEVELS), size=count, p=_LEVEL_P)
    ctype = rng.choice(len(pools.CUSTOMER_TYPES), size=count, p=_TYPE_P)
    has_forms_draw = rng.random(count)
    is_caller = rng.random(count) < 0.35
    order_rate = rng.gamma(1.2, 0.03, size=count) * (1 + level * 0.5)
    churn_draw = rng.random(count)
    churn_offset = rng.integers(
        window.days // 3, max(window.days // 3 + 1, 2 * window.days // 3), size=count
    )
    complain_draw = rng.random(count)
    complain_offset = rng.integers(
        window.days // 2, max(window.days // 2 + 1, window.days), size=count
    )
    change_draw = rng.random(count)
    change_offset = rng.integers(1, max(window.days, 2), size=count)
    family_draw = rng.random(count)

    surnames = [pools.SURNAMES[i][0] for i in surname_idx]
    pinyin_surnames = [pools.SURNAMES[i][1] for i in surname_idx]
    given, pinyin_given = [], []
    for row, length in zip(given_idx, given_len, strict=True):
        chars = [pools.GIVEN_CHARS[j] for j in row[:length]]
        given.append("".join(c for c, _ in chars))
        pinyin_given.append("".join(p for _, p in chars))

    shares_phone_of: list[int | None] = [None] * count
    # Families: person i and i+1 live together; i+1 takes i's surname, city and phone.
    for i in range(0, count - 1, 2):
        if family_draw[i] < 0.04:
            shares_phone_of[i + 1] = int(index[i])
            surnames[i + 1] = surnames[i]
            pinyin_surnames[i + 1] = pinyin_surnames[i]
            city[i + 1] = city[i]

    names = [s + g for s, g in zip(surnames, given, strict=True)]
    mobiles = [_mobile_for(int(i)) for i in index]
    second_mobile: list[str | None] = [None] * count
    changed_on: list[date | None] = [None] * count
    for i in range(count):
        if change_draw[i] < 0.04 and shares_phone_of[i] is None:
            second_mobile[i] = _mobile_for(int(index[i]), _SECOND_MOBILE_OFFSET)
            changed_on[i] = window.first + timedelta(days=int(change_offset[i]))

    emails: list[str | None] = []
    for i in range(count):
        if not has_email[i]:
            emails.append(None)
            continue
        local = f"{pinyin_surnames[i]}{pinyin_given[i]}{int(index[i])}"
        emails.append(f"{local}@{pools.EMAIL_DOMAINS[domain[i]][0]}")

    registered = [
        window.first - timedelta(days=int(registered_offset[i]) + 1)
        if registered_before[i]
        else window.first + timedelta(days=int(in_window_offset[i]))
        for i in range(count)
    ]
    # Non-members mostly reach us through forms (leads); members fill forms less often.
    has_forms = np.where(is_member, has_forms_draw < 0.35, has_forms_draw < 0.8)
    churned = [
        window.first + timedelta(days=int(churn_offset[i]))
        if is_member[i] and churn_draw[i] < 0.08
        else None
        for i in range(count)
    ]
    complaints = [
        window.first + timedelta(days=int(complain_offset[i])) if complain_draw[i] < 0.03 else None
        for i in range(count)
    ]

    return People(
        first_index=first,
        person_id=[f"P{int(i):08d}" for i in index],
        surname=surnames,
        given=given,
        name=names,
        pinyin_surname=pinyin_surnames,
        pinyin_given=pinyin_given,
        gender=gender,
        birthday=[date(1955, 1, 1) + timedelta(days=int(d)) for d in birth_offset],
        city=city,
        mobile=mobiles,
        second_mobile=second_mobile,
        phone_changed_on=changed_on,
        shares_phone_of=shares_phone_of,
        email=emails,
        is_member=is_member,
        registered_on=registered,
        membership_level=level,
        customer_type=ctype,
        has_forms=has_forms,
        is_caller=is_caller | np.array([c is not None for c in complaints]),
        order_rate=np.where(is_member, order_rate, 0.0),
        churned_on=churned,
        complaints_from=complaints,
    )


def blocks(customers: int) -> list[tuple[int, int]]:
    """(block index, people in block) covering `customers` people."""
    return [
        (b, min(BLOCK_SIZE, customers - b * BLOCK_SIZE))
        for b in range((customers + BLOCK_SIZE - 1) // BLOCK_SIZE)
    ]
