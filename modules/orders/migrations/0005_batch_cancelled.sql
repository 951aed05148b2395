-- Batches (shared/batches) count a cancelled item as decided, so a batch with cancelled orders still
-- completes (`batch.completed`). Here rather than in the core's migrations because only the orders module
-- has a batch route today; idempotent, so it may move to the core's migrations later. Safe on a live
-- database: a column with a constant default changes only the catalog (no rewrite); the widened CHECK is
-- added NOT VALID (batch_items' old rows are not scanned under the lock) and validated by 0006.
SET LOCAL lock_timeout = '5s';
ALTER TABLE batches ADD COLUMN IF NOT EXISTS cancelled integer NOT NULL DEFAULT 0;
ALTER TABLE batch_items DROP CONSTRAINT IF EXISTS batch_items_outcome_check;
ALTER TABLE batch_items ADD CONSTRAINT batch_items_outcome_check
  CHECK (outcome IN ('completed', 'rejected', 'dead_lettered', 'cancelled')) NOT VALID;
