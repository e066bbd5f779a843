"""Assets by layer: sources (external), ingest (raw), dbt (reference, staging)."""
