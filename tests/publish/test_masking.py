"""The masks personal data wears in the serving snapshot, evaluated by DuckDB."""

from __future__ import annotations

from datetime import date

import duckdb

from crm_warehouse.publish.masking import mask_birth_date, mask_email, mask_name, mask_phone


def _masked(expression: str, value: object) -> object:
    with duckdb.connect() as conn:
        return conn.execute(f"select {expression} from (select ? as v)", [value]).fetchall()[0][0]


def test_names_keep_their_first_character() -> None:
    assert _masked(mask_name("v"), "张三丰") == "张**"
    assert _masked(mask_name("v"), "欧阳娜娜") == "欧***"
    assert _masked(mask_name("v"), "李") == "李*"
    assert _masked(mask_name("v"), None) is None


def test_mobile_numbers_keep_prefix_and_last_four_digits() -> None:
    assert _masked(mask_phone("v"), "+8613812345678") == "138****5678"
    assert _masked(mask_phone("v"), "+85291234567") == "********4567"
    assert _masked(mask_phone("v"), None) is None


def test_emails_keep_the_first_character_and_the_domain() -> None:
    assert _masked(mask_email("v"), "zhangsan@qq.com") == "z***@qq.com"
    assert _masked(mask_email("v"), "not-an-email") is None


def test_birth_dates_keep_the_year() -> None:
    assert _masked(mask_birth_date("v"), date(1987, 6, 15)) == date(1987, 1, 1)
