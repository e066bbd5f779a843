"""Does the warehouse hold what the batch ledger says it loaded? Plain functions on a
DuckDB connection, used by the asset checks and by `crm demo`'s summary."""

from __future__ import annotations

from dataclasses import dataclass

import duckdb

from crm_warehouse.ingest.contracts import SourceContract


@dataclass(frozen=True)
class Reconciliation:
    source: str
    batch_id: str | None
    rows_in: int
    rows_in_raw: int
    rows_in_quarantine: int
    unbalanced_batches: int
    rows_erased: int = 0  # rows of erased people: dropped on arrival or erased since

    @property
    def passed(self) -> bool:
        balanced = self.rows_in == self.rows_in_raw + self.rows_in_quarantine + self.rows_erased
        return balanced and self.unbalanced_batches == 0

    def as_metadata(self) -> dict[str, object]:
        return {
            "batch_id": self.batch_id or "no batch yet",
            "rows_in": self.rows_in,
            "rows_in_raw": self.rows_in_raw,
            "rows_in_quarantine": self.rows_in_quarantine,
            "rows_erased": self.rows_erased,
            "unbalanced_batches": self.unbalanced_batches,
        }


def reconcile_latest_batch(
    conn: duckdb.DuckDBPyConnection, contract: SourceContract
) -> Reconciliation:
    """Compare the latest batch's recorded rows in with the rows it left in raw and quarantine.

    Upserted rows of that batch cannot have been replaced yet: it is the latest.
    """
    tables = {
        row[0]
        for row in conn.execute(
            "select schema_name || '.' || table_name from duckdb_tables()"
        ).fetchall()
    }
    if "meta.batches" not in tables:
        return Reconciliation(contract.source, None, 0, 0, 0, 0)
    unbalanced = conn.execute(
        "select count(*) from meta.batches "
        "where source = ? and rows_in <> rows_loaded + rows_quarantined + rows_erased",
        [contract.source],
    ).fetchall()[0][0]
    latest = conn.execute(
        "select batch_id, rows_in, rows_erased from meta.batches where source = ? "
        "order by finished_at desc limit 1",
        [contract.source],
    ).fetchall()
    if not latest:
        return Reconciliation(contract.source, None, 0, 0, 0, unbalanced)
    batch_id, rows_in, rows_erased = latest[0]
    in_raw = conn.execute(
        f"select count(*) from raw.{contract.table} where _batch_id = ?", [batch_id]
    ).fetchall()[0][0]
    in_quarantine = conn.execute(
        "select count(*) from quarantine.rejected_rows where batch_id = ? and source = ?",
        [batch_id, contract.source],
    ).fetchall()[0][0]
    return Reconciliation(
        contract.source, batch_id, rows_in, in_raw, in_quarantine, unbalanced, rows_erased
    )
