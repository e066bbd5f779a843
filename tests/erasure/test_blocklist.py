"""The blocklist's pieces on small inputs: the SQL HMAC equals Python's, identifiers are found
however they are written, multi-line CSV records go whole, unknown tables stop an erasure."""

from __future__ import annotations

import duckdb
import pytest

from crm_warehouse.erasure.blocklist import Blocklist, ErasureKeyMissing, append_to_blocklist
from crm_warehouse.erasure.footprint import CUSTOMER, Footprint
from crm_warehouse.erasure.keys import ErasureKey, load_key
from crm_warehouse.erasure.rules import WAREHOUSE_RULES
from crm_warehouse.erasure.scrub import TokenMatcher, UncoveredTables, erase_rows, without_person
from crm_warehouse.settings import Settings


@pytest.mark.parametrize(
    ("kind", "value"),
    [
        ("phone", "+86 138-0013-8000"),
        ("phone", "008613800138000"),
        ("email", " Zhang.Wei@Example.COM "),
        ("member", "M10000017"),
    ],
)
def test_sql_hmac_equals_python_hmac(kind: str, value: str) -> None:
    key = ErasureKey(b"k" * 80)  # longer than a block: HMAC hashes it first
    in_sql = duckdb.sql(f"select {key.digest_sql(kind, '$v')}", params={"v": value})  # type: ignore[arg-type]
    assert in_sql.fetchall()[0][0] == key.digest(kind, value)  # type: ignore[arg-type]


def test_phones_match_in_any_spelling_and_empty_values_never_do() -> None:
    key = ErasureKey(b"secret")
    spellings = ["13800138000", "+8613800138000", "138 0013 8000", "0086-138-0013-8000"]
    assert len({key.digest("phone", phone) for phone in spellings}) == 1
    assert key.digest("phone", "8000") is None and key.digest("email", "  ") is None


def test_the_blocklist_needs_its_key(crm_home: Settings) -> None:
    key = load_key(crm_home, create=True)
    assert key is not None
    assert (crm_home.erasure_dir / "erasure.key").stat().st_mode & 0o077 == 0
    append_to_blocklist(crm_home, "e1", [("phone", key.digest("phone", "13800138000") or "")])
    blocklist = Blocklist.load(crm_home)
    assert blocklist.blocks("phone", "+86 138 0013 8000")
    assert blocklist.mentioned_in('{"note": "call me on 138-0013-8000"}')
    assert not blocklist.mentioned_in('{"note": "call me on 138-0013-8001"}')
    (crm_home.erasure_dir / "erasure.key").unlink()
    with pytest.raises(ErasureKeyMissing, match="CRM_ERASURE_KEY"):
        Blocklist.load(crm_home)


def test_lines_and_quoted_multi_line_records_carrying_the_person_are_dropped() -> None:
    footprint = Footprint("CU1")
    footprint.add("phone", ["13800138000"])
    footprint.add("form", ["F0001"])
    matcher = TokenMatcher(footprint)
    data = (
        b"id,phone,note\n"
        b'F0001,,"first line\nsecond line"\n'
        b"F0002,138 0013 8000,\n"
        b"F00010,13900139000,\n"
        b"F0003,138001380001,\n"
    )
    assert without_person(data, matcher, csv_records=True) == (
        b"id,phone,note\nF00010,13900139000,\nF0003,138001380001,\n"
    )


def test_a_table_the_erasure_map_does_not_know_stops_the_erasure() -> None:
    conn = duckdb.connect()
    conn.execute("create table dim_customers (customer_id varchar)")
    conn.execute("create table shadow_copy (customer_id varchar, phone varchar)")
    footprint = Footprint("CU1")
    footprint.add(CUSTOMER, ["CU1"])
    with pytest.raises(UncoveredTables, match="shadow_copy"):
        erase_rows(conn, footprint, WAREHOUSE_RULES, frozenset())
