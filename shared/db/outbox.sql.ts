import type { EventEnvelope } from '../domain/events.ts';
import { carrierOf, injectCarrier } from '../observability/tracing/trace-context.ts';
import type { PoolClient } from './pool.ts';

/** Columns the outbox stores per event, in this order. */
export const OUTBOX_COLUMNS =
  'event_id, event_type, event_version, aggregate_id, correlation_id, envelope, trace_context';

/**
 * Outbox rows as unnest parameters, in {@link OUTBOX_COLUMNS} order: `$n::uuid[], $n+1::text[],
 * $n+2::int[], $n+3::text[], $n+4::text[], $n+5::jsonb[], $n+6::jsonb[]`. `trace_context` is the
 * trace context an event was tagged with (withCarrier: a batch writes each command's own), else the
 * active one; NULL while tracing is off.
 */
export const outboxColumns = (events: readonly EventEnvelope[]) => [
  events.map((e) => e.eventId),
  events.map((e) => e.type),
  events.map((e) => e.version),
  events.map((e) => e.key),
  events.map((e) => e.correlationId),
  events.map((e) => JSON.stringify(e)),
  events.map((e) => {
    const carrier = carrierOf(e) ?? injectCarrier();
    return carrier ? JSON.stringify(carrier) : null;
  }),
];

/**
 * Appends events to the outbox inside the caller's transaction; the relay publishes them once it
 * commits (wake the relays then: workers/outbox/wake.ts).
 */
export async function insertOutbox(client: PoolClient, events: readonly EventEnvelope[]): Promise<void> {
  if (events.length === 0) return;
  await client.query(
    `INSERT INTO outbox (${OUTBOX_COLUMNS})
     SELECT * FROM unnest($1::uuid[], $2::text[], $3::int[], $4::text[], $5::text[], $6::jsonb[], $7::jsonb[])`,
    outboxColumns(events),
  );
}
