-- The W3C trace context (traceparent, tracestate as JSON) of the command that wrote an event, so the
-- relay's publish and the projection of that event join the order's trace. NULL while tracing is off.
ALTER TABLE outbox ADD COLUMN trace_context jsonb;
