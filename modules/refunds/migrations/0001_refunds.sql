-- Write model: one row per refund, decided by the refunds worker with the order's row locked, in the
-- same transaction as its outbox event.
CREATE TABLE refunds (
  refund_id       uuid PRIMARY KEY,
  order_id        uuid        NOT NULL,
  amount_cents    bigint      NOT NULL CHECK (amount_cents > 0),
  currency        char(3),
  customer_id     text,
  reason          text,
  status          text        NOT NULL CHECK (status IN ('completed', 'rejected', 'dead_lettered')),
  code            text,
  detail          text,
  attempts        integer     NOT NULL,
  correlation_id  text        NOT NULL,
  requested_at    timestamptz NOT NULL,
  decided_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX refunds_order ON refunds (order_id) WHERE status = 'completed';

-- Read models, maintained only by the refunds projection.
CREATE TABLE refund_view (
  refund_id       uuid PRIMARY KEY,
  order_id        uuid,
  customer_id     text,
  currency        char(3),
  amount_cents    bigint,
  reason          text,
  status          text        NOT NULL,
  code            text,
  detail          text,
  attempts        integer     NOT NULL DEFAULT 0,
  correlation_id  text,
  requested_at    timestamptz,
  decided_at      timestamptz,
  updated_at      timestamptz NOT NULL
);
CREATE INDEX refund_view_order ON refund_view (order_id, requested_at);

-- Completed refunds per (day, currency) and (customer, currency), in shards like the order stats
-- (shared/db/migrations/0005): `dimension` is 'day' (key = YYYY-MM-DD) or 'customer' (key = customer id).
CREATE TABLE refund_stats_shards (
  dimension       text     NOT NULL CHECK (dimension IN ('day', 'customer')),
  key             text     NOT NULL,
  currency        char(3)  NOT NULL,
  shard           smallint NOT NULL,
  refund_count    bigint   NOT NULL DEFAULT 0,
  refunded_cents  bigint   NOT NULL DEFAULT 0,
  PRIMARY KEY (dimension, key, currency, shard)
);
CREATE VIEW refund_stats AS
  SELECT dimension, key, currency, sum(refund_count)::bigint AS refund_count,
         sum(refunded_cents)::bigint AS refunded_cents
    FROM refund_stats_shards GROUP BY dimension, key, currency;
