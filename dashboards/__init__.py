"""Apache Superset dashboards as code, on the published serving snapshot."""
