-- The projections' inbox gets a retention (the pruner's inboxRetentionHours), kept exactly-once by a horizon:
-- an inbox row now carries its event's occurredAt; the pruner first moves `inbox_horizon` (every event
-- that occurred before it may have lost its row), waits once for the live projection batches in flight
-- (the rebuild lock, exclusive), then deletes the rows below it. A delivery of an event older than the
-- horizon that the inbox no longer holds is refused (dead-lettered), never applied blindly.
-- Rows of the previous release (occurred_at NULL) are pruned by processed_at a day later, which covers
-- a clock skew of up to a day between a worker (occurredAt) and PostgreSQL (processed_at).
-- On a large inbox the two index builds scan the table and hold off inserts meanwhile: create them
-- beforehand with CREATE INDEX CONCURRENTLY under these names and this migration keeps them.
ALTER TABLE projection_inbox ADD COLUMN IF NOT EXISTS occurred_at timestamptz;
CREATE INDEX IF NOT EXISTS projection_inbox_occurred ON projection_inbox (occurred_at) WHERE occurred_at IS NOT NULL;
CREATE INDEX IF NOT EXISTS projection_inbox_legacy ON projection_inbox (processed_at) WHERE occurred_at IS NULL;

-- One row: what retention has taken from the projections' history.
--   inbox_horizon: events that occurred before it may have lost their inbox row (-infinity: none).
--   history_pruned_at: set when the pruner removed, or is about to remove, from the outbox or the inbox an
--     event whose effect the read models hold and the outbox will no longer have; cleared by a rebuild
--     (its read models are then exactly the retained outbox). While it is set, `projections:rebuild`
--     refuses unless told to drop that history.
CREATE TABLE IF NOT EXISTS projection_history (
  singleton          boolean     PRIMARY KEY DEFAULT true CHECK (singleton),
  inbox_horizon      timestamptz NOT NULL DEFAULT '-infinity',
  history_pruned_at  timestamptz
);
INSERT INTO projection_history DEFAULT VALUES ON CONFLICT DO NOTHING;
