-- Webhook endpoints a producer registered (`POST /v1/webhooks`), scoped to its tenant (its API key, or
-- `<key>/<sub-tenant>`). Secrets are stored encrypted (AES-256-GCM, `WEBHOOKS_SECRET_KEY`): `v1.<iv>.<tag>.<ciphertext>`
-- in base64url. After a rotation the previous secret still signs until `previous_secret_expires_at`.
CREATE TABLE webhook_endpoints (
  endpoint_id                uuid PRIMARY KEY,
  tenant                     text        NOT NULL,
  url                        text        NOT NULL,
  event_types                text[]      NOT NULL,
  description                text,
  enabled                    boolean     NOT NULL DEFAULT true,
  secret                     text        NOT NULL,
  previous_secret            text,
  previous_secret_expires_at timestamptz,
  created_at                 timestamptz NOT NULL DEFAULT now(),
  updated_at                 timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX webhook_endpoints_tenant ON webhook_endpoints (tenant) WHERE enabled;

-- One row per (endpoint, event): the delivery whose id is the `webhook-id` header (the same across
-- retries and redrives). Written by the fan-out (pending) and the webhooks worker (each attempt).
CREATE TABLE webhook_deliveries (
  delivery_id      text        PRIMARY KEY,
  endpoint_id      uuid        NOT NULL REFERENCES webhook_endpoints (endpoint_id) ON DELETE CASCADE,
  event_id         uuid        NOT NULL,
  event_type       text        NOT NULL,
  status           text        NOT NULL CHECK (status IN ('pending', 'delivered', 'dead_lettered', 'skipped')),
  attempts         integer     NOT NULL DEFAULT 0,
  response_status  integer,
  last_error       text,
  dead_letter_id   text,
  created_at       timestamptz NOT NULL DEFAULT now(),
  updated_at       timestamptz NOT NULL DEFAULT now(),
  delivered_at     timestamptz,
  UNIQUE (endpoint_id, event_id)
);
CREATE INDEX webhook_deliveries_recent ON webhook_deliveries (endpoint_id, created_at DESC);
CREATE INDEX webhook_deliveries_event ON webhook_deliveries (event_id) WHERE status = 'pending';
