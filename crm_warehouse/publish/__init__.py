"""Publishing: the read-only serving snapshot apps and dashboards query, with personal data
masked, versioned views, an atomic swap and rollback."""
