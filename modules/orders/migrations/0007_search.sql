-- Indexes of the command search (shared/search; bench/results/search.md measures them at 10 million
-- orders). Every one ends in the search's order (accepted_at DESC, order_id), so a filter's first page
-- is an index walk that stops after `limit` rows, and a cursor's next page starts where it ended.
--   no filter, time range only      → orders_search_accepted
--   status (+ time range)           → orders_search_status
--   subject (customer)              → orders_search_customer (order_view has its own for its lists)
--   API key / tenant                → orders_search_accepted_by / orders_search_tenant
--   error code (prefix of reason)   → orders_search_failed (failed orders only: reason is null otherwise)
--   error code or a failed status
--     + API key / subject / tenant   → orders_search_failed_by / _failed_customer / _failed_tenant
-- The failed-only indexes are partial (rejected and dead-lettered orders, the ones with a reason: a few
-- percent of the table): small, and a completed order's insert does not touch them. The search adds
-- `reason IS NOT NULL` when it asks for failed statuses only, so the planner may use them.
--   correlation id                  → orders_search_correlation
-- Combined filters start from the most selective of these and filter the rest on the way.
--
-- Live databases: every migration file runs in one transaction (shared/db/migrate.ts), where
-- CREATE INDEX CONCURRENTLY cannot run. A plain CREATE INDEX blocks writes to `orders` (not reads)
-- while it builds — about 10-30 s per index at 10 million rows here. On a large live table, run these
-- statements with CONCURRENTLY beforehand (outside a transaction; README, "Search"): IF NOT EXISTS
-- then makes this migration a no-op. The short lock_timeout makes it give up (the process retries at
-- its next start) rather than queue the table's writes behind its lock.
SET LOCAL lock_timeout = '5s';
CREATE INDEX IF NOT EXISTS orders_search_accepted ON orders (accepted_at DESC, order_id);
CREATE INDEX IF NOT EXISTS orders_search_status ON orders (status, accepted_at DESC, order_id);
CREATE INDEX IF NOT EXISTS orders_search_customer ON orders (customer_id, accepted_at DESC, order_id);
CREATE INDEX IF NOT EXISTS orders_search_accepted_by ON orders (accepted_by, accepted_at DESC, order_id);
CREATE INDEX IF NOT EXISTS orders_search_tenant ON orders (tenant, accepted_at DESC, order_id);
CREATE INDEX IF NOT EXISTS orders_search_failed ON orders (accepted_at DESC, order_id) WHERE reason IS NOT NULL;
CREATE INDEX IF NOT EXISTS orders_search_failed_by ON orders (accepted_by, accepted_at DESC, order_id) WHERE reason IS NOT NULL;
CREATE INDEX IF NOT EXISTS orders_search_failed_customer ON orders (customer_id, accepted_at DESC, order_id) WHERE reason IS NOT NULL;
CREATE INDEX IF NOT EXISTS orders_search_failed_tenant ON orders (tenant, accepted_at DESC, order_id) WHERE reason IS NOT NULL;
CREATE INDEX IF NOT EXISTS orders_search_correlation ON orders (correlation_id);
