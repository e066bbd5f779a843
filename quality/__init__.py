"""Data quality: reconciliation of loads now; great-expectations suites and the publish gate
build on it."""
