"""Ingest: sources into `raw.*`, bad rows into `quarantine.rejected_rows`, nothing lost."""
