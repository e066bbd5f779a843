"""The record schema identity resolution takes, and how its values are made comparable.

A record is one sighting of a person in one source. Every column but `source` and
`source_key` may be missing; resolution uses whatever each record carries:

| column       | meaning                                                           |
|--------------|-------------------------------------------------------------------|
| source       | where the record comes from (`forms`, `sales_customers`, …)       |
| source_key   | the record's key in that source; unique within the source         |
| name         | the person's name as written: Chinese, pinyin or any Latin script |
| gender       | `female`/`male`, `F`/`M` or `女`/`男`                              |
| birth_date   | a date, or text a date parser reads (`1990-05-01`)                |
| phone        | any spelling (`+86 138-1234-5678`, `0086…`, full-width digits)    |
| email        | any case, with stray spaces or a full-width `＠`                   |
| id_card      | national identity card number (居民身份证号)                        |
| address      | postal address as written                                         |
| city         | city name or code, as long as one source spells it one way        |
| postcode     | postal code                                                       |
| member_no    | an account number two sources share; equal numbers are certain    |
| updated_at   | when the source last changed the record (optional, for ordering)  |

`prepare` turns such a frame into the comparable form the model reads: one `record_id`,
values normalised, and keys for Chinese names that survive the ways they get misspelt.
"""

from __future__ import annotations

import re
import unicodedata

import pandas as pd
import phonenumbers
from pypinyin import lazy_pinyin

RECORD_COLUMNS: tuple[str, ...] = (
    "source",
    "source_key",
    "name",
    "gender",
    "birth_date",
    "phone",
    "email",
    "id_card",
    "address",
    "city",
    "postcode",
    "member_no",
    "updated_at",
)

# The columns of a prepared record, in order; the model compares the ones after record_id.
PREPARED_COLUMNS: tuple[str, ...] = (
    "record_id",
    "source",
    "source_key",
    "name_norm",
    "name_key",
    "name_tokens",
    "gender",
    "birth_date",
    "phone",
    "email",
    "id_card",
    "address",
    "city",
    "postcode",
    "member_no",
)

# Surnames whose everyday reading differs from the character's common reading.
_SURNAME_READINGS = {
    "曾": "zeng",
    "单": "shan",
    "解": "xie",
    "仇": "qiu",
    "区": "ou",
    "朴": "piao",
    "查": "zha",
    "乐": "yue",
    "覃": "qin",
    "盖": "ge",
    "缪": "miao",
    "翟": "zhai",
    "尉": "yu",
    "召": "shao",
    "种": "chong",
    "秘": "bi",
    "长孙": "zhangsun",
    "万俟": "moqi",
    "尉迟": "yuchi",
}
_COMPOUND_SURNAMES = frozenset(
    [
        "欧阳",
        "司马",
        "诸葛",
        "上官",
        "东方",
        "皇甫",
        "令狐",
        "慕容",
        "尉迟",
        "长孙",
        "宇文",
        "司徒",
        "夏侯",
        "轩辕",
        "端木",
        "公孙",
        "万俟",
    ]
)
_CJK = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]")
_SPACES = re.compile(r"\s+")
_NOT_DIGIT = re.compile(r"\D")
_NOT_ALNUM = re.compile(r"[^0-9A-Za-z]")
_E164 = re.compile(r"^\+[1-9]\d{6,14}$")
_GENDERS = {
    "f": "female",
    "female": "female",
    "女": "female",
    "m": "male",
    "male": "male",
    "男": "male",
}


class RecordSchemaError(ValueError):
    """A records frame lacks a required column or repeats a record."""


def prepare(records: pd.DataFrame, default_region: str = "CN") -> pd.DataFrame:
    """Records in the schema above → the prepared, comparable frame (`PREPARED_COLUMNS`).

    Normalising works on distinct values, so a million records with a few hundred thousand
    distinct names cost a few hundred thousand conversions, not a million.
    """
    missing = {"source", "source_key"} - set(records.columns)
    if missing:
        raise RecordSchemaError(f"records need the columns {sorted(missing)}")
    frame = records.reindex(columns=list(RECORD_COLUMNS))
    source = frame["source"].astype("string").str.strip()
    source_key = frame["source_key"].astype("string").str.strip()
    if source.isna().any() or source_key.isna().any():
        raise RecordSchemaError("every record needs a source and a source_key")
    record_id = source + ":" + source_key
    repeated = record_id[record_id.duplicated()]
    if not repeated.empty:
        raise RecordSchemaError(
            f"{len(repeated)} records repeat a (source, source_key), e.g. {repeated.iloc[0]}"
        )

    name_norm = _per_distinct(frame["name"], _clean_name)
    name_parts = _per_distinct(name_norm, _name_tokens)
    prepared = pd.DataFrame(
        {
            "record_id": record_id,
            "source": source,
            "source_key": source_key,
            "name_norm": name_norm,
            "name_key": name_parts.map(lambda t: " ".join(sorted(t)) if t else None),
            "name_tokens": name_parts,
            "gender": _per_distinct(frame["gender"], _clean_gender),
            "birth_date": _dates(frame["birth_date"]),
            "phone": _per_distinct(frame["phone"], lambda v: _clean_phone(v, default_region)),
            "email": _per_distinct(frame["email"], _clean_email),
            "id_card": _per_distinct(frame["id_card"], _clean_code),
            "address": _per_distinct(frame["address"], _clean_address),
            "city": _per_distinct(frame["city"], _clean_city),
            "postcode": _per_distinct(frame["postcode"], _clean_code),
            "member_no": _per_distinct(frame["member_no"], _clean_code),
        }
    )
    return prepared.reset_index(drop=True)


def _per_distinct(values: pd.Series, convert) -> pd.Series:  # type: ignore[no-untyped-def]
    """Apply `convert` once per distinct non-empty value; missing stays missing."""
    present = values.dropna()
    if present.empty:
        return pd.Series([None] * len(values), index=values.index, dtype="object")
    distinct = pd.unique(present.astype(str))
    lookup = {value: convert(value) for value in distinct}
    converted = [None if _is_missing(v) else lookup[str(v)] for v in values.tolist()]
    return pd.Series(converted, index=values.index, dtype="object")


def _is_missing(value: object) -> bool:
    return value is None or (not isinstance(value, (list, tuple)) and bool(pd.isna(value)))


def _nfkc(value: str) -> str:
    return unicodedata.normalize("NFKC", value)


def _clean_name(value: str) -> str | None:
    text = _SPACES.sub(" ", _nfkc(value)).strip()
    if not text:
        return None
    if _CJK.search(text):
        return text.replace(" ", "")
    return text.lower()


def _name_tokens(name: str | None) -> list[str] | None:
    """A name as its sounds: `陈霞琳`, `陳霞琳`, `Chen Xialin` and `XIALIN chen` all give
    [chen, xialin] (surname, then given name), so their sorted join is one key."""
    if not name:
        return None
    if not _CJK.search(name):
        tokens = [t for t in re.split(r"[\s\-.,·]+", name.lower()) if t]
        return tokens or None
    surname = name[:2] if name[:2] in _COMPOUND_SURNAMES else name[:1]
    given = name[len(surname) :]
    surname_sound = _SURNAME_READINGS.get(surname) or "".join(lazy_pinyin(surname))
    tokens = [surname_sound.lower()]
    if given:
        tokens.append("".join(lazy_pinyin(given)).lower())
    return tokens


def _clean_gender(value: str) -> str | None:
    return _GENDERS.get(_nfkc(value).strip().lower())


def _dates(values: pd.Series) -> pd.Series:
    parsed = pd.to_datetime(values, errors="coerce", format="mixed")
    text = parsed.dt.strftime("%Y-%m-%d")
    return text.where(parsed.notna(), None).astype("object")


def _clean_phone(value: str, default_region: str) -> str | None:
    text = _nfkc(value).strip()
    if not text:
        return None
    compact = re.sub(r"[\s\-().]", "", text)
    if _E164.match(compact):
        return compact
    if compact.startswith("00"):
        compact = "+" + compact[2:]
    try:
        number = phonenumbers.parse(compact, default_region)
    except phonenumbers.NumberParseException:
        digits = _NOT_DIGIT.sub("", text)
        return digits or None
    if not phonenumbers.is_possible_number(number):
        # `86-138…` is a Chinese mobile with its country code but no `+`.
        digits = _NOT_DIGIT.sub("", text)
        if digits.startswith("86") and len(digits) == 13:
            return "+" + digits
        return digits or None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def _clean_email(value: str) -> str | None:
    text = _SPACES.sub("", _nfkc(value)).lower()
    return text or None


def _clean_code(value: str) -> str | None:
    text = _NOT_ALNUM.sub("", _nfkc(value)).upper()
    return text or None


def _clean_address(value: str) -> str | None:
    text = _SPACES.sub("", _nfkc(value)).lower()
    return text or None


def _clean_city(value: str) -> str | None:
    text = _SPACES.sub("", _nfkc(value)).lower()
    if len(text) > 2 and text.endswith("市"):
        text = text[:-1]
    return text or None
