-- Write model: one row per order, written by the order worker in the same transaction as its outbox event.
CREATE TABLE orders (
  order_id        uuid PRIMARY KEY,
  customer_id     text        NOT NULL,
  currency        char(3)     NOT NULL,
  total_cents     bigint      NOT NULL CHECK (total_cents >= 0),
  items           jsonb       NOT NULL,
  status          text        NOT NULL CHECK (status IN ('completed', 'rejected', 'dead_lettered')),
  reason          text,
  attempts        integer     NOT NULL,
  correlation_id  text        NOT NULL,
  accepted_at     timestamptz NOT NULL,
  decided_at      timestamptz NOT NULL DEFAULT now()
);

-- Transactional outbox. Rows are kept after publishing (OUTBOX_RETENTION_HOURS) so read models can be rebuilt.
CREATE TABLE outbox (
  id              bigserial   PRIMARY KEY,
  event_id        uuid        NOT NULL UNIQUE,
  event_type      text        NOT NULL,
  event_version   integer     NOT NULL,
  aggregate_id    text        NOT NULL,
  correlation_id  text        NOT NULL,
  envelope        jsonb       NOT NULL,
  created_at      timestamptz NOT NULL DEFAULT now(),
  published_at    timestamptz
);
CREATE INDEX outbox_unpublished ON outbox (id) WHERE published_at IS NULL;
CREATE INDEX outbox_published_at ON outbox (published_at) WHERE published_at IS NOT NULL;

-- Wake relays on commit. The channel is per schema so isolated deployments (and tests) do not wake each other.
CREATE FUNCTION outbox_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  PERFORM pg_notify('outbox_' || TG_TABLE_SCHEMA, '');
  RETURN NULL;
END $$;
CREATE TRIGGER outbox_inserted AFTER INSERT ON outbox FOR EACH STATEMENT EXECUTE FUNCTION outbox_notify();

-- Unified dead letters of every transport: the original bytes and headers, why, how often, from where.
CREATE TABLE dead_letters (
  id              text        PRIMARY KEY,
  transport       text        NOT NULL CHECK (transport IN ('bullmq', 'kafka', 'rabbitmq')),
  origin          text        NOT NULL,
  kind            text        NOT NULL CHECK (kind IN ('command', 'event')),
  message_key     text,
  payload         bytea       NOT NULL,
  headers         jsonb       NOT NULL DEFAULT '{}',
  error           text        NOT NULL,
  stack           text,
  attempts        integer     NOT NULL,
  correlation_id  text,
  order_id        text,
  first_failed_at timestamptz,
  failed_at       timestamptz NOT NULL DEFAULT now(),
  status          text        NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'redriven', 'discarded')),
  redrive_count   integer     NOT NULL DEFAULT 0,
  resolved_at     timestamptz,
  resolved_by     text
);
CREATE INDEX dead_letters_pending ON dead_letters (failed_at DESC) WHERE status = 'pending';
CREATE INDEX dead_letters_order ON dead_letters (order_id);
