"""Scoring runs under its own DuckDB memory limit and gives the run's limit back after."""

from __future__ import annotations

import duckdb
import pytest

from ml.scoring import memory_limit

# One list of six million integers: memory DuckDB cannot spill to disk.
UNSPILLABLE = "select sum(len(l)) from (select list(i) as l from range(6000000) t(i))"


def _limit(conn: duckdb.DuckDBPyConnection) -> str:
    return conn.execute("select current_setting('memory_limit')").fetchone()[0]  # type: ignore[index]


def test_a_query_too_big_for_the_run_limit_fits_under_the_scoring_limit() -> None:
    conn = duckdb.connect()
    conn.execute("set threads = 1")
    # In MiB: DuckDB reports a limit rounded to 0.1 of its unit, and that is what comes back.
    conn.execute("set memory_limit = '16MiB'")
    run_limit = _limit(conn)
    with pytest.raises(duckdb.OutOfMemoryException):
        conn.execute(UNSPILLABLE).fetchall()

    with memory_limit(conn, "512MB"):
        assert conn.execute(UNSPILLABLE).fetchall() == [(6_000_000,)]
    assert _limit(conn) == run_limit

    with pytest.raises(RuntimeError), memory_limit(conn, "512MB"):
        raise RuntimeError("scoring failed")
    assert _limit(conn) == run_limit  # given back on failure too

    with memory_limit(conn, None):
        assert _limit(conn) == run_limit
