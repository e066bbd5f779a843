"""A Spark session of the pipeline's own (identity, scoring) leaves nothing running: the JVM
pyspark started ends with it, and the next session starts its own."""

from __future__ import annotations

from pathlib import Path

import pytest

from crm_warehouse.target.spark import local_spark_session

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("spark")]


def test_each_session_ends_its_jvm_and_the_next_one_starts_afresh(tmp_path: Path) -> None:
    from pyspark import SparkContext

    processes = []
    for run in range(2):
        with local_spark_session("test session", tmp_path) as spark:
            assert spark.range(1_000).selectExpr("sum(id)").first()[0] == 499_500  # type: ignore[index]
            processes.append(SparkContext._gateway.proc)  # type: ignore[union-attr]
        assert processes[run].poll() is not None, "the JVM outlived its session"
    assert processes[0].pid != processes[1].pid
    # Each session's scratch folder goes with it.
    assert list(tmp_path.iterdir()) == []
