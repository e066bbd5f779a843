"""`resolve()` on hand-made frames: the plain function users call on their own records."""

from __future__ import annotations

import pandas as pd
import pytest

from crm_warehouse.identity import resolve
from crm_warehouse.identity.engines import open_engine
from crm_warehouse.identity.model import train
from crm_warehouse.identity.records import prepare

RECORDS = pd.DataFrame(
    [
        # One woman, four spellings: traditional characters, pinyin, a near-homophone slip.
        dict(source="sales", source_key="1", name="陈霞琳", gender="女", birth_date="1990-05-01",
             phone="13800012345", email="chenxialin@126.com", city="广州"),
        dict(source="forms", source_key="a", name="陳霞琳", phone="+86 138-0001-2345",
             city="广州市"),
        dict(source="forms", source_key="b", name="Chen Xialin", phone="0086 13800012345",
             email=" Chenxialin@126.COM "),
        dict(source="tickets", source_key="t1", name="陈霞玲", phone="１３８００ ０１２３４５"),
        # Her father uses the same phone: a different person.
        dict(source="sales", source_key="2", name="陈兰", gender="男", birth_date="1965-02-11",
             phone="13800012345", email="chenlan@126.com", city="广州"),
        dict(source="forms", source_key="c", name="陈兰", phone="138 0001 2345", city="广州"),
        # Two men called 王伟 in different cities with different phones.
        dict(source="sales", source_key="3", name="王伟", phone="13900000001",
             email="wangwei@qq.com", city="北京"),
        dict(source="forms", source_key="d", name="wang wei", phone="13900000001", city="北京"),
        dict(source="sales", source_key="4", name="王伟", phone="13900000002",
             email="ww2@qq.com", city="上海"),
        # Not Chinese: the same schema works.
        dict(source="crm", source_key="x1", name="John  Smith",
             email="john.smith@example.com", city="London"),
        dict(source="crm", source_key="x2", name="john smith",
             email="JOHN.SMITH@example.com ", postcode="SW1A 1AA"),
        dict(source="crm", source_key="x3", name="Jane Smith", id_card="11010519491231002X"),
        dict(source="crm", source_key="x4", name="Jane Smyth", id_card="11010519491231002x"),
        dict(source="crm", source_key="x5", name="Jane Smith", email="jane@elsewhere.org"),
    ]
)  # fmt: skip


def _clusters(resolved: pd.DataFrame) -> set[frozenset[str]]:
    keys = resolved["source"] + ":" + resolved["source_key"]
    return {frozenset(group) for group in keys.groupby(resolved["cluster_id"]).agg(list)}


def test_resolve_finds_the_people_behind_the_records() -> None:
    resolved = resolve(RECORDS)
    assert list(resolved.columns) == ["source", "source_key", "cluster_id", "cluster_size"]
    assert len(resolved) == len(RECORDS)
    assert _clusters(resolved) == {
        frozenset({"sales:1", "forms:a", "forms:b", "tickets:t1"}),
        frozenset({"sales:2", "forms:c"}),
        frozenset({"sales:3", "forms:d"}),
        frozenset({"sales:4"}),
        frozenset({"crm:x1", "crm:x2"}),
        frozenset({"crm:x3", "crm:x4"}),
        frozenset({"crm:x5"}),
    }


def test_cluster_ids_are_the_smallest_record_of_each_cluster() -> None:
    resolved = resolve(RECORDS)
    keys = resolved["source"] + ":" + resolved["source_key"]
    smallest = keys.groupby(resolved["cluster_id"]).transform("min")
    assert (resolved["cluster_id"] == smallest).all()


def test_resolve_needs_only_source_and_key() -> None:
    resolved = resolve(pd.DataFrame({"source": ["a", "b"], "source_key": ["1", "1"],
                                     "email": ["x@y.cn", "X@Y.CN"]}))  # fmt: skip
    assert resolved["cluster_id"].nunique() == 1


@pytest.mark.slow
@pytest.mark.xdist_group("spark")
def test_resolve_on_spark_finds_the_same_people_with_the_same_model() -> None:
    # Splink's Spark backend in a local Spark session: the model's settings (trained on
    # DuckDB, so its SQL is DuckDB's and is written again for Spark), the certain-pair and
    # weak-record rules and the clustering all run there.
    with open_engine("duckdb") as duckdb_splink:
        duckdb_splink.load("records", prepare(RECORDS))
        model = train(duckdb_splink, "records")
    assert model.splink_settings["sql_dialect"] == "duckdb"
    on_duckdb = resolve(RECORDS, model)
    on_spark = resolve(RECORDS, model, engine="spark")
    assert _clusters(on_spark) == _clusters(on_duckdb)
    assert on_spark.equals(on_duckdb)
    assert len(_clusters(on_spark)) == 7
