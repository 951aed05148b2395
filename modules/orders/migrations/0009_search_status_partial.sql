-- The command search's status index covers the statuses other than `completed` only. A completed
-- order (most of them; 94% in the data of bench/results/search.md) no longer writes an entry in it
-- (about 128 bytes of WAL per order, bench/cost/wal-breakdown.ts); a search for completed orders
-- never used it (it walks orders_search_accepted and filters: bench/results/search.md, "status"),
-- rejected and dead-lettered ones use the failed-only indexes, and a search for cancelled orders (or
-- any status list without `completed`) uses this one: the search binds its values (no generic
-- plan), so the planner proves that `status = ANY('{cancelled}')` implies `status <> 'completed'`.
-- Live databases: on a large table, create the new index beforehand with the same statement plus
-- CONCURRENTLY (outside a transaction) and drop the old one with DROP INDEX CONCURRENTLY; IF NOT EXISTS
-- and IF EXISTS then make this a no-op. Otherwise the build blocks writes to `orders` (not reads) while
-- it scans the table. The short lock_timeout makes the migration give up (the process retries at its
-- next start) rather than queue the table's writes behind its lock.
SET LOCAL lock_timeout = '5s';
CREATE INDEX IF NOT EXISTS orders_search_not_completed ON orders (status, accepted_at DESC, order_id)
  WHERE status <> 'completed';
DROP INDEX IF EXISTS orders_search_status;
