import type { Message, MessageAttributeValue, SendMessageBatchRequestEntry } from '@aws-sdk/client-sqs';
import type { NewDeadLetter } from '../../dead-letters/dead-letter.ts';
import { contentId, deadLetterId } from '../../delivery/dead-letter.ts';
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
  /**
   * On a copy the consumer sent in a message's place (an event split out of a pack, a snoozed or
   * parked message): the attempts it had before, so its first receive is attempt `prior + 1`.
   */
  priorAttempts: 'x-prior-attempts',
  /** On such a copy: how often it was snoozed or parked so far (grows the snooze delay). */
  snoozes: 'x-snoozes',
  /**
   * On such a copy whose delay is longer than SQS's 15-minute `DelaySeconds`: when it is due (ms since
   * epoch). Received earlier, it is sent again for the rest of the delay, its state unchanged.
   */
  notBefore: 'x-not-before',
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
  SqsHeaders.snoozes,
  SqsHeaders.notBefore,
  SqsHeaders.error,
  SqsHeaders.attempts,
  SqsHeaders.originQueue,
]);

/** An event's own headers and the bus's key and trace: what a copy or a DLQ copy keeps before anything else. */
const KNOWN: ReadonlySet<string> = new Set([
  ...Object.values(EventHeaders),
  SqsHeaders.key,
  'traceparent',
  'tracestate',
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

/** Where a received message stands, as its attributes and SQS's receive count say. */
export interface ReceivedState {
  /** The attempt this receive is: the attempts a copy carried (`x-prior-attempts`) plus SQS's receive count. */
  attempt: number;
  snoozes: number;
  /** When a copy with a long delay is due (ms since epoch); absent: now. */
  notBefore?: number | undefined;
}

/** The delivery state of a received message (see {@link SqsHeaders.priorAttempts}). */
export function receivedState(message: Message): ReceivedState {
  const notBefore = count(message, SqsHeaders.notBefore);
  return {
    attempt: count(message, SqsHeaders.priorAttempts) + receiveCountOf(message),
    snoozes: count(message, SqsHeaders.snoozes),
    ...(notBefore > 0 ? { notBefore } : {}),
  };
}

function count(message: Pick<Message, 'MessageAttributes'>, name: string): number {
  const n = Number(message.MessageAttributes?.[name]?.StringValue ?? '0');
  return Number.isSafeInteger(n) && n > 0 ? n : 0;
}

/** The receive count SQS reports: 1 on the first delivery. */
export function receiveCountOf(message: Message): number {
  const n = Number(message.Attributes?.ApproximateReceiveCount ?? '1');
  return Number.isInteger(n) && n > 0 ? n : 1;
}

/** What a copy sent in a message's place carries: the attempt its first receive is, its snoozes, when it is due. */
export interface CopyState {
  attempt: number;
  snoozes: number;
  notBefore?: number | undefined;
}

/**
 * The attributes of a copy the consumer sends in a message's place: the message's own (a pack's
 * marks included), its old state replaced by `state`. SQS allows 10 attributes: the state always
 * fits, then the pack marks, the event's headers and trace, then the rest as room allows.
 */
export function copyAttributes(
  headers: Record<string, string>,
  state: CopyState,
): Record<string, MessageAttributeValue> {
  const ours: Record<string, string> = {};
  if (state.attempt > 1) ours[SqsHeaders.priorAttempts] = String(state.attempt - 1);
  if (state.snoozes > 0) ours[SqsHeaders.snoozes] = String(state.snoozes);
  if (state.notBefore !== undefined) ours[SqsHeaders.notBefore] = String(Math.round(state.notBefore));
  const stateNames = new Set<string>([SqsHeaders.priorAttempts, SqsHeaders.snoozes, SqsHeaders.notBefore]);
  const rank = (name: string) =>
    name === SqsHeaders.pack || name === SqsHeaders.packTrace ? 0 : KNOWN.has(name) ? 1 : 2;
  const own = Object.entries(headers)
    .filter(([name]) => !stateNames.has(name))
    .sort(([a], [b]) => rank(a) - rank(b));
  const kept = Object.fromEntries(own.slice(0, MAX_ATTRIBUTES - Object.keys(ours).length));
  return toAttributes({ ...kept, ...ours });
}

/**
 * The dead-letter id of a message in `queue` (the delivery core's one scheme): its event id
 * attribute (a pack's event: the id in its body), else a hash of its bytes. The same however often it
 * fails and is redriven: a redrive sends the same bytes and event id back.
 */
export function deadLetterIdOf(queue: string, message: Message): string {
  const eventId = headersOf(message)[EventHeaders.eventId];
  return deadLetterId({ transport: 'sqs', origin: queue, messageId: eventId ?? contentId(message.Body) });
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
  const original = Object.entries(originalHeaders(headers)).sort(
    ([a], [b]) => Number(!KNOWN.has(a)) - Number(!KNOWN.has(b)),
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
  subjectId: string | null,
): NewDeadLetter {
  const headers = originalHeaders(headersOf(message));
  const firstReceived = Number(message.Attributes?.ApproximateFirstReceiveTimestamp);
  return {
    id: deadLetterIdOf(queue, message),
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
    subjectId: subjectId ?? headers[SqsHeaders.key] ?? null,
    firstFailedAt: Number.isFinite(firstReceived) && firstReceived > 0 ? new Date(firstReceived) : new Date(),
  };
}
