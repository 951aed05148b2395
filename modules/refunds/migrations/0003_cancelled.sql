-- Cancel (POST /v1/refunds/{id}/cancel): a refund cancelled before it was decided gets a `cancelled` row
-- in the write model (never executed afterwards: the worker's insert leaves any row but a dead-lettered
-- one alone). Numbered after 0002_tenant (names apply in order). Safe on a live database: the new CHECK
-- is added NOT VALID (only the catalog changes; new rows are checked at once) and validated by 0004 in a
-- transaction of its own, under a lock that lets reads and writes go on; the short lock_timeout makes the
-- migration give up (and the process retry at its next start) rather than queue the table's writes
-- behind its lock.
SET LOCAL lock_timeout = '5s';
ALTER TABLE refunds DROP CONSTRAINT IF EXISTS refunds_status_check;
ALTER TABLE refunds ADD CONSTRAINT refunds_status_check
  CHECK (status IN ('completed', 'rejected', 'dead_lettered', 'cancelled')) NOT VALID;
