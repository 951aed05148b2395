-- Batches (issue #22): a module's batch route (POST /v1/orders/batch) records how many items it accepted
-- under a batch id; each item's decision (completed, rejected, dead-lettered) is recorded once per item in
-- `batch_items` and counted in its `batches` row inside the transaction that decides the item; the
-- transaction that makes every accepted item decided stamps `completed_at` and appends `batch.completed`
-- to the outbox (once: the row lock orders the counters' updates, and `completed_at IS NULL` guards the
-- stamp). A worker may decide an item before the API recorded the batch's total (`total` NULL until then).
-- Safe on a live database: two new tables; the short lock_timeout makes the migration give up (and the
-- process retry at its next start) rather than wait behind a long transaction.
SET LOCAL lock_timeout = '5s';
CREATE TABLE IF NOT EXISTS batches (
  batch_id        uuid        PRIMARY KEY,
  module          text        NOT NULL,
  -- Who posted it (the key's id) and who it is for (its tenant): NULL until the API recorded it.
  accepted_by     text,
  tenant          text,
  correlation_id  text,
  -- Items the API accepted (refused ones, 429/503 per item, are not part of it); NULL until recorded.
  total           integer     CHECK (total >= 0),
  completed       integer     NOT NULL DEFAULT 0,
  rejected        integer     NOT NULL DEFAULT 0,
  dead_lettered   integer     NOT NULL DEFAULT 0,
  created_at      timestamptz NOT NULL DEFAULT now(),
  completed_at    timestamptz
);

-- One row per decided item: a redelivered decision changes nothing; a dead-lettered item decided after a
-- redrive moves from `dead_lettered` to its outcome (the batch's counts follow, its completion does not repeat).
CREATE TABLE IF NOT EXISTS batch_items (
  batch_id    uuid        NOT NULL,
  item_id     text        NOT NULL,
  outcome     text        NOT NULL CHECK (outcome IN ('completed', 'rejected', 'dead_lettered')),
  decided_at  timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (batch_id, item_id)
);
