-- Read models (CQRS), maintained only by projections from events. Queries never touch the write model.

-- Idempotent consumers: an event id is recorded in the same transaction as its read-model change.
CREATE TABLE projection_inbox (
  consumer      text        NOT NULL,
  event_id      uuid        NOT NULL,
  processed_at  timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (consumer, event_id)
);

CREATE TABLE order_view (
  order_id        uuid PRIMARY KEY,
  customer_id     text,
  currency        char(3),
  total_cents     bigint,
  items           jsonb,
  status          text        NOT NULL,
  attempts        integer     NOT NULL DEFAULT 0,
  last_error      text,
  correlation_id  text,
  accepted_at     timestamptz,
  completed_at    timestamptz,
  updated_at      timestamptz NOT NULL
);
CREATE INDEX order_view_customer ON order_view (customer_id, accepted_at DESC, order_id DESC);

CREATE TABLE customer_stats (
  customer_id     text   NOT NULL,
  currency        char(3) NOT NULL,
  completed_count bigint NOT NULL DEFAULT 0,
  rejected_count  bigint NOT NULL DEFAULT 0,
  revenue_cents   bigint NOT NULL DEFAULT 0,
  PRIMARY KEY (customer_id, currency)
);

CREATE TABLE daily_stats (
  day                 date    NOT NULL,
  currency            char(3) NOT NULL,
  completed_count     bigint  NOT NULL DEFAULT 0,
  rejected_count      bigint  NOT NULL DEFAULT 0,
  dead_lettered_count bigint  NOT NULL DEFAULT 0,
  revenue_cents       bigint  NOT NULL DEFAULT 0,
  PRIMARY KEY (day, currency)
);
