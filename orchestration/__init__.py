"""Dagster wiring: assets, checks, jobs and resources. Logic lives in `crm_warehouse`."""
