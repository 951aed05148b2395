-- Command search by trace id (shared/search): the commands whose outbox events carry a W3C trace id,
-- the 32 hex digits of `traceparent` (migration 0009). Partial: rows written while tracing was off
-- hold no trace context. Only as far back as the outbox is retained (OUTBOX_RETENTION_HOURS).
--
-- Live databases: every migration file runs in one transaction (shared/db/migrate.ts), where
-- CREATE INDEX CONCURRENTLY cannot run. A plain CREATE INDEX blocks the table's writes (not its reads)
-- while it builds: on a large outbox, create it beforehand with the same statement plus CONCURRENTLY
-- (outside a transaction); IF NOT EXISTS then makes this a no-op. The short lock_timeout makes the
-- migration give up (and the process retry at its next start) rather than queue the table's writes
-- behind its lock while a long transaction holds it.
SET LOCAL lock_timeout = '5s';
CREATE INDEX IF NOT EXISTS outbox_trace_id ON outbox ((substr(trace_context->>'traceparent', 4, 32)))
  WHERE trace_context IS NOT NULL;
