-- Cancel (POST /v1/orders/{id}/cancel): an order cancelled before it was decided gets a `cancelled` row in
-- the write model (never executed afterwards: the worker's upsert leaves any row but a dead-lettered one
-- alone). Safe on a live database: the new CHECK is added NOT VALID — only the catalog changes, new rows
-- are checked at once, existing ones are not scanned under this lock — and validated by the next migration
-- (0004) in a transaction of its own, which scans under a lock that lets reads and writes go on. The short
-- lock_timeout makes the migration give up (and the process retry at its next start) rather than queue
-- the table's reads and writes behind its lock while a long transaction holds it.
SET LOCAL lock_timeout = '5s';
ALTER TABLE orders DROP CONSTRAINT IF EXISTS orders_status_check;
ALTER TABLE orders ADD CONSTRAINT orders_status_check
  CHECK (status IN ('completed', 'rejected', 'dead_lettered', 'cancelled')) NOT VALID;
