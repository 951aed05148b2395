-- An event the bus refuses for good (SQS refusing a character or a size, Kafka's MESSAGE_TOO_LARGE,
-- a RabbitMQ publish over its max size) is quarantined by the relay: recorded as a dead letter
-- (kind event, origin 'outbox', the broker's error) and marked here in the same transaction. Its
-- published_at is set too, so no relay claims it again and neither the backlog gauges nor retention
-- see it as stuck; quarantined_at tells it apart from an event the bus took. Rolling upgrade: a relay
-- of the previous release never sets it and never reads it.
ALTER TABLE outbox ADD COLUMN IF NOT EXISTS quarantined_at timestamptz;
CREATE INDEX IF NOT EXISTS outbox_quarantined ON outbox (quarantined_at) WHERE quarantined_at IS NOT NULL;
