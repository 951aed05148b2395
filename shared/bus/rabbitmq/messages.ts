import { createHash } from 'node:crypto';
import type { Message, MessagePropertyHeaders } from 'amqplib';
import type { NewDeadLetter } from '../../dead-letters/dead-letter.ts';
import type { EventEnvelope } from '../../domain/events.ts';
import { encodeEvent, EventHeaders } from '../codec.ts';
import { contentId, deadLetterId } from '../../delivery/dead-letter.ts';
import type { OutgoingMessage } from './confirm.ts';

/** Headers the RabbitMQ bus adds next to {@link EventHeaders}. */
export const RabbitmqHeaders = {
  /** The event's key (the order id): what Kafka carries as the message key. */
  key: 'event-key',
  /** Delivery attempt of this copy; absent on the first. */
  attempt: 'x-attempt',
  /** Snoozes (and parks) so far, which grow the snooze delay; absent before the first. */
  snoozes: 'x-snoozes',
  /**
   * Deliveries of earlier copies that ended without an ack (a crash, a lost connection), carried
   * through hand-backs: with this copy's `x-delivery-count`, what the consumer's delivery limit counts.
   */
  returns: 'x-returns',
  /** When a copy handed back for longer than the longest delay queue is due (epoch ms). */
  dueAt: 'x-due-at',
  /** When the first attempt failed (ISO 8601), carried through the retries. */
  firstFailedAt: 'x-first-failed-at',
  /** On dead letters only. */
  error: 'x-error',
  attempts: 'x-attempts',
  originQueue: 'x-origin-queue',
} as const;

/** Headers the broker or this bus adds while a message travels; never part of "the original". */
const TRANSIENT_HEADERS: ReadonlySet<string> = new Set([
  'x-death',
  'x-first-death-exchange',
  'x-first-death-queue',
  'x-first-death-reason',
  'x-last-death-exchange',
  'x-last-death-queue',
  'x-last-death-reason',
  'x-delivery-count',
  RabbitmqHeaders.attempt,
  RabbitmqHeaders.snoozes,
  RabbitmqHeaders.returns,
  RabbitmqHeaders.dueAt,
  RabbitmqHeaders.firstFailedAt,
  RabbitmqHeaders.error,
  RabbitmqHeaders.attempts,
  RabbitmqHeaders.originQueue,
]);

/** An event as an AMQP message: persistent, `messageId` = event id, routing key = event type. */
export function eventMessage(exchange: string, event: EventEnvelope): OutgoingMessage {
  const { body, headers } = encodeEvent(event);
  return {
    exchange,
    routingKey: event.type,
    content: body,
    options: {
      messageId: event.eventId,
      correlationId: event.correlationId,
      type: event.type,
      contentType: 'application/json',
      deliveryMode: 2,
      timestamp: Math.floor(Date.parse(event.occurredAt) / 1000),
      headers: { ...headers, [RabbitmqHeaders.key]: event.key },
    },
  };
}

function headerString(value: unknown): string {
  if (typeof value === 'string') return value;
  if (Buffer.isBuffer(value)) return value.toString('utf8');
  if (typeof value === 'number' || typeof value === 'boolean' || typeof value === 'bigint')
    return String(value);
  return JSON.stringify(value) ?? '';
}

/** The message's own headers as strings, without what the broker or the retry path added. */
export function originalHeaders(headers: MessagePropertyHeaders | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [name, value] of Object.entries(headers ?? {})) {
    if (!TRANSIENT_HEADERS.has(name) && value !== undefined && value !== null)
      out[name] = headerString(value);
  }
  return out;
}

/** A non-negative integer header (AMQP may carry it as a number or a string), else undefined. */
export function intHeader(headers: MessagePropertyHeaders | undefined, name: string): number | undefined {
  const raw: unknown = headers?.[name];
  const n = typeof raw === 'number' ? raw : typeof raw === 'string' ? Number(raw) : Number.NaN;
  return Number.isInteger(n) && n >= 0 ? n : undefined;
}

/** The message id, or a content hash for a message published without one (poison from elsewhere). */
export function messageIdOf(msg: Message): string {
  const id: unknown = msg.properties.messageId;
  if (typeof id === 'string' && id.length > 0) return id;
  return `sha256-${createHash('sha256').update(msg.content).digest('hex').slice(0, 32)}`;
}

/** Copies `msg` (original bytes and properties) with `extraHeaders` on top of its original headers. */
export function copyOf(
  msg: Message,
  target: { exchange: string; routingKey: string },
  extraHeaders: Record<string, string | number>,
): OutgoingMessage {
  const p = msg.properties;
  const options: OutgoingMessage['options'] = {
    messageId: messageIdOf(msg),
    deliveryMode: 2,
    headers: { ...originalHeaders(p.headers), ...extraHeaders },
  };
  if (typeof p.correlationId === 'string') options.correlationId = p.correlationId;
  if (typeof p.type === 'string') options.type = p.type;
  if (typeof p.contentType === 'string') options.contentType = p.contentType;
  if (typeof p.timestamp === 'number') options.timestamp = p.timestamp;
  return { ...target, content: msg.content, options };
}

/**
 * The dead-letter row of a message that failed for good in `queue`. Its id is the delivery core's one
 * scheme: origin `queue` and the event id header (a message without one: its bytes' hash), so the
 * same message gets the same id however often it fails, is redriven and fails again.
 */
export function deadLetterRecord(
  queue: string,
  msg: Message,
  error: Error,
  attempts: number,
  subjectId: string | null,
): NewDeadLetter {
  const headers = originalHeaders(msg.properties.headers);
  const firstFailed = msg.properties.headers?.[RabbitmqHeaders.firstFailedAt];
  return {
    id: deadLetterId({
      transport: 'rabbitmq',
      origin: queue,
      messageId: headers[EventHeaders.eventId] ?? contentId(msg.content),
    }),
    transport: 'rabbitmq',
    origin: queue,
    kind: 'event',
    messageKey: headers[EventHeaders.eventId] ?? messageIdOf(msg),
    payload: msg.content,
    headers,
    error: error.message,
    stack: error.stack ?? null,
    attempts,
    correlationId: headers[EventHeaders.correlationId] ?? null,
    subjectId: subjectId ?? headers[RabbitmqHeaders.key] ?? null,
    firstFailedAt:
      typeof firstFailed === 'string' && !Number.isNaN(Date.parse(firstFailed))
        ? new Date(firstFailed)
        : new Date(),
  };
}
