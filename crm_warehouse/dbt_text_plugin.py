"""A dbt-duckdb plugin giving SQL an `nfkc(text)` function: Unicode NFKC normalisation.

DuckDB only offers NFC. NFKC folds what CRM text is full of: full-width digits and letters
(`１３８…`, `ＡＢＣ`), the ideographic space and compatibility forms. It runs vectorised in
Arrow's C++ kernel, not per row in Python.
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from dbt.adapters.duckdb.plugins import BasePlugin
from duckdb import DuckDBPyConnection
from duckdb.sqltypes import VARCHAR


def nfkc(values: pa.Array) -> pa.Array:
    return pc.utf8_normalize(values, form="NFKC")


class Plugin(BasePlugin):
    def initialize(self, plugin_config: dict[str, Any]) -> None:
        del plugin_config

    def configure_connection(self, conn: DuckDBPyConnection) -> None:
        conn.create_function(
            "nfkc",
            nfkc,
            [VARCHAR],
            VARCHAR,
            type="arrow",
            null_handling="special",
            side_effects=False,
        )
