-- Who each order was for, for fairness between producers (shared/fairness): the API key that accepted
-- it, or `<key id>/<sub-tenant>` when the key named one — in the write model and, from its events, in
-- the read model (GET /v1/orders/{id} shows it). Null for orders decided before these columns existed
-- and for jobs that named no tenant. Safe on a live database: a nullable column without a default
-- changes only the catalog (no table rewrite, no scan); the short lock_timeout makes the migration give
-- up (and the process retry at its next start) rather than queue the tables' reads and writes behind
-- its lock while a long transaction holds one of them.
SET LOCAL lock_timeout = '5s';
ALTER TABLE orders ADD COLUMN IF NOT EXISTS tenant text;
ALTER TABLE order_view ADD COLUMN IF NOT EXISTS tenant text;
