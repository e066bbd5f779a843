"""What is in the warehouse: rows per layer and quarantined rows by reason."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import duckdb

LAYERS = ("raw", "staging", "intermediate", "identity", "marts", "ml", "serving")


@dataclass(frozen=True)
class WarehouseSummary:
    tables: dict[str, dict[str, int]]  # layer -> table -> rows
    quarantined: dict[str, dict[str, int]]  # source -> reason code -> rows
    batches: int

    def layer_total(self, layer: str) -> int:
        return sum(self.tables.get(layer, {}).values())

    @property
    def quarantined_total(self) -> int:
        return sum(sum(reasons.values()) for reasons in self.quarantined.values())

    def render(self) -> str:
        lines = ["Rows per layer"]
        for layer in LAYERS:
            if layer not in self.tables:
                continue
            lines.append(f"  {layer:<12} {self.layer_total(layer):>12,}")
            for table, rows in sorted(self.tables[layer].items()):
                lines.append(f"    {table:<34} {rows:>12,}")
        lines.append(f"  {'quarantine':<12} {self.quarantined_total:>12,}")
        lines.append("Quarantined rows by reason")
        if not self.quarantined:
            lines.append("  none")
        for source, reasons in sorted(self.quarantined.items()):
            detail = ", ".join(f"{reason} {rows:,}" for reason, rows in sorted(reasons.items()))
            lines.append(f"  {source:<20} {detail}")
        return "\n".join(lines)


def summarise(warehouse_path: Path) -> WarehouseSummary:
    if not warehouse_path.exists():
        return WarehouseSummary({}, {}, 0)
    with duckdb.connect(str(warehouse_path), read_only=True) as conn:
        listed = conn.execute(
            "select schema_name, table_name, estimated_size from duckdb_tables() "
            "where schema_name in (select unnest($layers))",
            {"layers": list(LAYERS)},
        ).fetchall()
        tables: dict[str, dict[str, int]] = {}
        for schema, table, _ in listed:
            (rows,) = conn.execute(f'select count(*) from "{schema}"."{table}"').fetchall()[0]
            tables.setdefault(schema, {})[table] = rows
        quarantined: dict[str, dict[str, int]] = {}
        batches = 0
        if any(schema == "raw" for schema, *_ in listed):
            for source, reason, rows in conn.execute(
                "select source, reason_code, count(*) from quarantine.rejected_rows "
                "group by all order by all"
            ).fetchall():
                quarantined.setdefault(source, {})[reason] = rows
            batches = conn.execute("select count(distinct batch_id) from meta.batches").fetchall()[
                0
            ][0]
    return WarehouseSummary(tables, quarantined, batches)
