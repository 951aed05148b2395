-- The order an order replays (a bulk `replay`, shared/bulk): the same order posted again under a new id,
-- shown by GET /v1/orders/{id} as `replayOf`. Null for orders posted by producers. Safe on a live
-- database: a nullable column without a default changes only the catalog (no table rewrite, no scan);
-- the short lock_timeout makes the migration give up (and the process retry at its next start) rather
-- than queue the table's reads and writes behind its lock while a long transaction holds one.
SET LOCAL lock_timeout = '5s';
ALTER TABLE orders ADD COLUMN IF NOT EXISTS replay_of uuid;
