-- Who each refund was for, for fairness between producers (shared/fairness): the API key that
-- requested it, or `<key id>/<sub-tenant>` when the key named one. Null for refunds decided before this
-- column existed and for jobs that named no tenant. Safe on a live database: a nullable column without
-- a default changes only the catalog (no table rewrite, no scan); the short lock_timeout makes the
-- migration give up (and the process retry at its next start) rather than queue the table's writes
-- behind its lock while a long transaction holds the table.
SET LOCAL lock_timeout = '5s';
ALTER TABLE refunds ADD COLUMN IF NOT EXISTS tenant text;
