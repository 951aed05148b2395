import { EventEnvelopeSchema, type EventEnvelope } from '../domain/events.ts';
import { PoisonMessageError } from '../errors/domain.ts';
import { carrierOf } from '../observability/tracing/trace-context.ts';

/** Message headers every bus puts on every event (the names the brief uses). */
export const EventHeaders = {
  eventId: 'event-id',
  eventType: 'event-type',
  eventVersion: 'event-version',
  correlationId: 'correlation-id',
} as const;

/**
 * An event's body and headers. An event the relay tagged with its publish span's trace context
 * (`withCarrier`) also carries the W3C `traceparent` (and `tracestate`) headers, so its consumer joins
 * the order's trace on every bus.
 */
export function encodeEvent(event: EventEnvelope): { body: Buffer; headers: Record<string, string> } {
  return {
    body: Buffer.from(JSON.stringify(event)),
    headers: {
      [EventHeaders.eventId]: event.eventId,
      [EventHeaders.eventType]: event.type,
      [EventHeaders.eventVersion]: String(event.version),
      [EventHeaders.correlationId]: event.correlationId,
      ...carrierOf(event),
    },
  };
}

/**
 * Parses raw bytes into an event.
 * @throws {PoisonMessageError} when the bytes are not JSON or not a known event: never retried.
 */
export function decodeEvent(body: Buffer | string | null | undefined): EventEnvelope {
  if (body === null || body === undefined || body.length === 0) throw new PoisonMessageError('empty message');
  let json: unknown;
  try {
    json = JSON.parse(typeof body === 'string' ? body : body.toString('utf8'));
  } catch {
    throw new PoisonMessageError('message is not valid JSON');
  }
  const parsed = EventEnvelopeSchema.safeParse(json);
  if (!parsed.success) {
    throw new PoisonMessageError(
      'message is not a valid event',
      parsed.error.issues.map((i) => ({ path: i.path.join('.'), message: i.message })),
    );
  }
  return parsed.data;
}

/** Exponential backoff with full jitter, capped. */
export function backoffDelayMs(
  attempt: number,
  baseMs: number,
  maxMs = 60_000,
  random = Math.random,
): number {
  const ceiling = Math.min(maxMs, baseMs * 2 ** Math.max(0, attempt - 1));
  return Math.round(ceiling / 2 + (random() * ceiling) / 2);
}
