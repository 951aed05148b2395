import type { Message, MessageAttributeValue, SendMessageBatchRequestEntry } from '@aws-sdk/client-sqs';
import type { NewDeadLetter } from '../../dead-letters/dead-letter.ts';
import type { EventEnvelope } from '../../domain/events.ts';
import { PoisonMessageError } from '../../errors/domain.ts';
import { encodeEvent, EventHeaders } from '../codec.ts';
import {
  carrierFromHeaders,
  carrierOf,
  type TraceCarrier,
} from '../../observability/tracing/trace-context.ts';

/** Message attributes the SQS bus adds next to {@link EventHeaders}. */
export const SqsHeaders = {
  /** The event's key (the order id): a FIFO message's group, and what Kafka carries as the key. */
  key: 'event-key',
  /** On a pack (several events in one message, see {@link packEntries}): how many it holds. */
  pack: 'x-pack',
  /**
   * On a pack: each event's W3C trace headers, a JSON array in pack order (`null` for none): a pack is
   * one message, but each of its events belongs to its own order's trace.
   */
  packTrace: 'x-pack-trace',
  /** On an event split out of a pack to be retried: the attempts it already had there. */
  priorAttempts: 'x-prior-attempts',
  /** On dead-letter copies only. */
  error: 'x-error',
  attempts: 'x-attempts',
  originQueue: 'x-origin-queue',
} as const;

/** Events per pack, at most (like the BullMQ bus's batch jobs). */
export const MAX_PACK_EVENTS = 100;
/** Bytes per pack, at most: one 64 KiB chunk, the unit SQS bills a request by. */
export const MAX_PACK_BYTES = 65_536;

/** SQS allows 10 message attributes per message. */
const MAX_ATTRIBUTES = 10;
/** Attributes this bus adds while a message travels; never part of "the original". */
const TRANSIENT: ReadonlySet<string> = new Set([
  SqsHeaders.pack,
  SqsHeaders.packTrace,
  SqsHeaders.priorAttempts,
  SqsHeaders.error,
  SqsHeaders.attempts,
  SqsHeaders.originQueue,
]);

/** Headers as SQS String message attributes. */
export function toAttributes(headers: Record<string, string>): Record<string, MessageAttributeValue> {
  return Object.fromEntries(
    Object.entries(headers).map(([name, value]) => [name, { DataType: 'String', StringValue: value }]),
  );
}

/** A message's attributes as headers (String and Number as they are, Binary as base64). */
export function headersOf(message: Pick<Message, 'MessageAttributes'>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [name, v] of Object.entries(message.MessageAttributes ?? {})) {
    if (v.StringValue !== undefined) out[name] = v.StringValue;
    else if (v.BinaryValue !== undefined) out[name] = Buffer.from(v.BinaryValue).toString('base64');
  }
  return out;
}

/** The message's own headers, without what the bus added on a dead-letter copy. */
export function originalHeaders(headers: Record<string, string>): Record<string, string> {
  return Object.fromEntries(Object.entries(headers).filter(([name]) => !TRANSIENT.has(name)));
}

/**
 * What SQS counts toward its 256 KiB message and batch limits: the body and every attribute's name,
 * type and value, in bytes.
 */
export function entrySize(
  entry: Pick<SendMessageBatchRequestEntry, 'MessageBody' | 'MessageAttributes'>,
): number {
  let bytes = Buffer.byteLength(entry.MessageBody ?? '');
  for (const [name, v] of Object.entries(entry.MessageAttributes ?? {})) {
    bytes += Buffer.byteLength(name) + Buffer.byteLength(v.DataType ?? '');
    bytes += Buffer.byteLength(v.StringValue ?? '') + (v.BinaryValue?.byteLength ?? 0);
  }
  return bytes;
}

/**
 * An event as a batch entry: the codec's JSON body and headers as attributes, plus the key. On a
 * FIFO queue its message group is the key (one order's events in order, orders in parallel) and its
 * deduplication id the event id (a re-published event within SQS's 5-minute window is dropped).
 */
export function eventEntry(id: string, event: EventEnvelope, fifo: boolean): SendMessageBatchRequestEntry {
  const { body, headers } = encodeEvent(event);
  return {
    Id: id,
    MessageBody: body.toString('utf8'),
    MessageAttributes: toAttributes({ ...headers, [SqsHeaders.key]: event.key }),
    ...(fifo ? { MessageGroupId: event.key, MessageDeduplicationId: event.eventId } : {}),
  };
}

/**
 * The entries of a publish to a standard queue: a lone event as one message (like FIFO's), several as
 * packs — one message holding up to {@link MAX_PACK_EVENTS} events and {@link MAX_PACK_BYTES}, its body
 * the JSON array of the events' own bodies, byte for byte, marked with `x-pack`. SQS costs (and bills)
 * per request: a relay batch of 500 events is then 1 SendMessageBatch call instead of 50, and so on
 * for every receive and delete. The consumer hands each event of a pack to the handler as if it had
 * come alone; an event that fails is split out into a message of its own (see the consumer).
 */
export function packEntries(events: readonly EventEnvelope[]): SendMessageBatchRequestEntry[] {
  if (events.length === 1) return [eventEntry('e0', events[0]!, false)];
  const entries: SendMessageBatchRequestEntry[] = [];
  let bodies: string[] = [];
  let traces: (TraceCarrier | null)[] = [];
  let bytes = 2;
  const flush = () => {
    if (bodies.length === 0) return;
    const traced = traces.some((t) => t !== null);
    entries.push({
      Id: `p${entries.length}`,
      MessageBody: `[${bodies.join(',')}]`,
      MessageAttributes: toAttributes({
        [SqsHeaders.pack]: String(bodies.length),
        ...(traced ? { [SqsHeaders.packTrace]: JSON.stringify(traces) } : {}),
      }),
    });
    bodies = [];
    traces = [];
    bytes = 2;
  };
  for (const event of events) {
    const body = encodeEvent(event).body.toString('utf8');
    traces.push(carrierOf(event) ?? null);
    const size = Buffer.byteLength(body) + 1;
    if (bodies.length === MAX_PACK_EVENTS || (bodies.length > 0 && bytes + size > MAX_PACK_BYTES)) flush();
    bodies.push(body);
    bytes += size;
  }
  flush();
  return entries;
}

/** Whether a received message is a pack. */
export function isPack(message: Pick<Message, 'MessageAttributes'>): boolean {
  return message.MessageAttributes?.[SqsHeaders.pack] !== undefined;
}

/**
 * The events of a pack, each as the message it would have been alone: its own bytes (as published),
 * the codec's headers and key as attributes, the pack's receive attributes.
 * @throws {PoisonMessageError} when the body is not a JSON array: the pack as a whole is poison.
 */
export function unpack(pack: Message): Message[] {
  let items: unknown;
  try {
    items = JSON.parse(pack.Body ?? '');
  } catch {
    throw new PoisonMessageError('pack is not valid JSON');
  }
  if (!Array.isArray(items)) throw new PoisonMessageError('pack is not a JSON array');
  let traces: unknown = undefined;
  try {
    traces = JSON.parse(pack.MessageAttributes?.[SqsHeaders.packTrace]?.StringValue ?? 'null');
  } catch {
    traces = undefined; // a bad trace attribute costs the trace, never the events
  }
  return items.map((item, i) => {
    // JSON.stringify(JSON.parse(x)) gives back x for what JSON.stringify made: the original bytes.
    const body = JSON.stringify(item) ?? 'null';
    const headers: Record<string, string> = {};
    if (typeof item === 'object' && item !== null) {
      const e = item as Partial<Record<'eventId' | 'type' | 'version' | 'correlationId' | 'key', unknown>>;
      if (typeof e.eventId === 'string') headers[EventHeaders.eventId] = e.eventId;
      if (typeof e.type === 'string') headers[EventHeaders.eventType] = e.type;
      if (typeof e.version === 'number') headers[EventHeaders.eventVersion] = String(e.version);
      if (typeof e.correlationId === 'string') headers[EventHeaders.correlationId] = e.correlationId;
      if (typeof e.key === 'string') headers[SqsHeaders.key] = e.key;
    }
    Object.assign(
      headers,
      carrierFromHeaders(Array.isArray(traces) ? (traces[i] as Record<string, unknown>) : undefined),
    );
    return {
      MessageId: `${pack.MessageId ?? 'pack'}-${i}`,
      Body: body,
      MessageAttributes: toAttributes(headers),
      ...(pack.Attributes ? { Attributes: pack.Attributes } : {}),
    };
  });
}

/** Attempts an event had before this message: in the pack it was split out of. */
export function priorAttemptsOf(message: Pick<Message, 'MessageAttributes'>): number {
  const n = Number(message.MessageAttributes?.[SqsHeaders.priorAttempts]?.StringValue ?? '0');
  return Number.isInteger(n) && n > 0 ? n : 0;
}

/** The receive count SQS reports: 1 on the first delivery. */
export function receiveCountOf(message: Message): number {
  const n = Number(message.Attributes?.ApproximateReceiveCount ?? '1');
  return Number.isInteger(n) && n > 0 ? n : 1;
}

/** Deterministic, so recording the same failed message twice is harmless; no ":" (see DeadLetterRecord). */
export function deadLetterId(queue: string, message: Message): string {
  const eventId = headersOf(message)[EventHeaders.eventId];
  return `sqs-${queue}-${eventId ?? message.MessageId ?? 'unknown'}`.replaceAll(':', '_');
}

/**
 * The DLQ copy's attributes: the original ones (as many as fit beside ours, event headers first) plus
 * the error, the attempts and the origin queue.
 */
export function deadLetterAttributes(
  headers: Record<string, string>,
  error: Error,
  attempts: number,
  originQueue: string,
): Record<string, MessageAttributeValue> {
  const ours = {
    [SqsHeaders.error]: error.message.slice(0, 1_000) || error.name,
    [SqsHeaders.attempts]: String(attempts),
    [SqsHeaders.originQueue]: originQueue,
  };
  const known = new Set<string>([...Object.values(EventHeaders), SqsHeaders.key]);
  const original = Object.entries(originalHeaders(headers)).sort(
    ([a], [b]) => Number(!known.has(a)) - Number(!known.has(b)),
  );
  const kept = Object.fromEntries(original.slice(0, MAX_ATTRIBUTES - Object.keys(ours).length));
  return toAttributes({ ...kept, ...ours });
}

/** The dead-letter row of a message that failed for good in `queue` (its origin: a redrive goes back there). */
export function deadLetterRecord(
  queue: string,
  message: Message,
  error: Error,
  attempts: number,
  orderId: string | null,
): NewDeadLetter {
  const headers = originalHeaders(headersOf(message));
  const firstReceived = Number(message.Attributes?.ApproximateFirstReceiveTimestamp);
  return {
    id: deadLetterId(queue, message),
    transport: 'sqs',
    origin: queue,
    kind: 'event',
    messageKey: headers[EventHeaders.eventId] ?? message.MessageId ?? null,
    payload: Buffer.from(message.Body ?? '', 'utf8'),
    headers,
    error: error.message,
    stack: error.stack ?? null,
    attempts,
    correlationId: headers[EventHeaders.correlationId] ?? null,
    subjectId: orderId ?? headers[SqsHeaders.key] ?? null,
    firstFailedAt: Number.isFinite(firstReceived) && firstReceived > 0 ? new Date(firstReceived) : new Date(),
  };
}
