"""The record schema and how `prepare` makes messy values comparable."""

from __future__ import annotations

import pandas as pd
import pytest

from crm_warehouse.identity.records import PREPARED_COLUMNS, RecordSchemaError, prepare


def _prepared(**columns: list[object]) -> pd.DataFrame:
    size = len(next(iter(columns.values())))
    frame = pd.DataFrame(
        {"source": ["s"] * size, "source_key": [str(i) for i in range(size)], **columns}
    )
    return prepare(frame)


def test_phone_spellings_become_one_e164_number() -> None:
    spellings = [
        "13812345678",
        "+86 138-1234-5678",
        "0086 13812345678",
        "138 1234 5678",
        "+8613812345678",
        "１３８１２３４５６７８",
        "86-13812345678",
        "138-1234-5678",
    ]
    assert set(_prepared(phone=spellings)["phone"]) == {"+8613812345678"}


def test_emails_fold_case_spaces_and_full_width_at() -> None:
    emails = ["chen@126.com", " Chen@126.COM ", "chen＠126.com", None]
    assert _prepared(email=emails)["email"].tolist() == ["chen@126.com"] * 3 + [None]


@pytest.mark.parametrize(
    "spelling", ["陈霞琳", "陳霞琳", "Chen Xialin", "XIALIN chen", "陈　霞琳", " 陈霞琳 "]
)
def test_chinese_names_share_one_sound_key(spelling: str) -> None:
    assert _prepared(name=[spelling])["name_key"].tolist() == ["chen xialin"]


def test_surnames_read_as_surnames() -> None:
    keys = _prepared(name=["曾国藩", "单雄信", "欧阳修"])["name_tokens"].tolist()
    assert [tokens[0] for tokens in keys] == ["zeng", "shan", "ouyang"]


def test_id_cards_dates_gender_and_city_are_normalised() -> None:
    prepared = _prepared(
        id_card=["11010519491231002x", "110105 19491231 002X"],
        birth_date=["1949-12-31", "1949/12/31"],
        gender=["女", "F"],
        city=["广州市", "广州"],
    )
    assert set(prepared["id_card"]) == {"11010519491231002X"}
    assert set(prepared["birth_date"]) == {"1949-12-31"}
    assert set(prepared["gender"]) == {"female"}
    assert set(prepared["city"]) == {"广州"}
    assert list(prepared.columns) == list(PREPARED_COLUMNS)


def test_missing_values_stay_missing() -> None:
    prepared = _prepared(name=[None, "  "], phone=[None, ""], email=[float("nan"), None])
    assert prepared[["name_norm", "name_key", "phone", "email"]].isna().all().all()


def test_a_frame_without_keys_or_with_repeated_keys_is_refused() -> None:
    with pytest.raises(RecordSchemaError, match="source_key"):
        prepare(pd.DataFrame({"source": ["a"], "name": ["x"]}))
    with pytest.raises(RecordSchemaError, match="repeat"):
        prepare(pd.DataFrame({"source": ["a", "a"], "source_key": ["1", "1"]}))
