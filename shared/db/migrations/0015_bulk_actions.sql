-- Bulk actions by query (issue #23): an operator's redrive, cancel or replay of what a search selects, run
-- as rate-limited background work by the workers' bulk runner. `bulk_actions` holds the request (the exact
-- query, the confirmed count, who), its progress counters and the runner's lease; `bulk_action_items` the
-- frozen selection, one row per item, its outcome set once when the item was acted upon — a runner that
-- resumes after a crash acts only on items without an outcome, so nothing is done twice by the bulk action.
-- Safe on a live database: two new tables; the short lock_timeout gives up rather than wait.
SET LOCAL lock_timeout = '5s';
CREATE TABLE IF NOT EXISTS bulk_actions (
  id                  uuid        PRIMARY KEY,
  action              text        NOT NULL CHECK (action IN ('redrive', 'cancel', 'replay')),
  query               jsonb       NOT NULL,
  -- Nothing accepted (or failed) after this instant is selected: the selection is the query as of the start.
  as_of               timestamptz NOT NULL,
  -- The count the operator confirmed (the dry run's, checked again at the start).
  expected            integer     NOT NULL CHECK (expected >= 0),
  status              text        NOT NULL DEFAULT 'queued'
                        CHECK (status IN ('queued', 'running', 'completed', 'failed', 'cancelled')),
  -- Items per second the runner may act on; NULL: the runner's default (BULK_RATE_PER_SECOND).
  rate_per_second     integer     CHECK (rate_per_second > 0),
  -- Selection: the snapshot's keyset cursor while it is taken, then `snapshot_done`.
  snapshot_cursor     text,
  snapshot_done       boolean     NOT NULL DEFAULT false,
  -- When the selection was complete and acting on it began (the measured rate counts from here).
  executing_since     timestamptz,
  selected            integer     NOT NULL DEFAULT 0,
  touched             integer     NOT NULL DEFAULT 0,
  succeeded           integer     NOT NULL DEFAULT 0,
  skipped             integer     NOT NULL DEFAULT 0,
  failed              integer     NOT NULL DEFAULT 0,
  error               text,
  created_by          jsonb       NOT NULL,
  -- Milliseconds, as the list's cursor carries it.
  created_at          timestamptz NOT NULL DEFAULT date_trunc('milliseconds', now()),
  started_at          timestamptz,
  finished_at         timestamptz,
  cancel_requested_at timestamptz,
  lease_owner         text,
  lease_expires_at    timestamptz
);
CREATE INDEX IF NOT EXISTS bulk_actions_created ON bulk_actions (created_at DESC, id DESC);
-- What a runner looks for: unfinished actions.
CREATE INDEX IF NOT EXISTS bulk_actions_open ON bulk_actions (created_at) WHERE status IN ('queued', 'running');

CREATE TABLE IF NOT EXISTS bulk_action_items (
  bulk_id     uuid        NOT NULL REFERENCES bulk_actions (id) ON DELETE CASCADE,
  module      text        NOT NULL,
  item_id     text        NOT NULL,
  -- NULL: not acted upon yet.
  outcome     text        CHECK (outcome IN ('succeeded', 'skipped', 'failed')),
  detail      text,
  done_at     timestamptz,
  PRIMARY KEY (bulk_id, module, item_id)
);
CREATE INDEX IF NOT EXISTS bulk_action_items_pending ON bulk_action_items (bulk_id, module, item_id)
  WHERE outcome IS NULL;
