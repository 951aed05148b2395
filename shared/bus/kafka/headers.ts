import { logLevel, type IHeaders, type LogEntry, type logCreator } from 'kafkajs';
import { contentId } from '../../delivery/dead-letter.ts';
import type { Logger } from '../../observability/logger.ts';
import { EventHeaders } from '../codec.ts';

/** Headers the Kafka bus adds on retry and dead-letter copies; never part of an event's own headers. */
export const KafkaHeaders = {
  /** Delivery attempt of this copy (1 when absent). */
  attempt: 'x-attempt',
  /** Epoch ms before which a retry copy must not be handled. */
  notBefore: 'x-not-before',
  firstFailedAt: 'x-first-failed-at',
  error: 'x-error',
  attempts: 'x-attempts',
  originTopic: 'x-origin-topic',
  originPartition: 'x-origin-partition',
  originOffset: 'x-origin-offset',
  /**
   * The consumer group a copy is for: on retry copies and redriven events (every group reads the shared
   * events and retry topics; the others skip it), and on dead letters (whose group a redrive targets).
   * Absent: for every group (first deliveries, copies written before groups were tracked).
   */
  group: 'x-consumer-group',
} as const;

const transportHeaders = new Set<string>(Object.values(KafkaHeaders));

/** The topics one bus uses: events, their delayed retries, and the dead letters. */
export interface KafkaTopics {
  events: string;
  retry: string;
  dlq: string;
}

export function kafkaTopics(topic: string): KafkaTopics {
  return { events: topic, retry: `${topic}.retry`, dlq: `${topic}.dlq` };
}

/** Where a message was first consumed: the target of a redrive (its topic), kept on retry and DLQ copies. */
export interface Origin {
  topic: string;
  partition: number;
  offset: string;
}

/** Kafka header values arrive as Buffers (or arrays of them); the bus works with one string each. */
export function readHeaders(headers: IHeaders | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [name, value] of Object.entries(headers ?? {})) {
    const last = Array.isArray(value) ? value.at(-1) : value;
    if (last !== undefined) out[name] = last.toString();
  }
  return out;
}

/** The message's own headers, without what the bus added for retries and dead letters. */
export function ownHeaders(headers: Record<string, string>): Record<string, string> {
  return Object.fromEntries(Object.entries(headers).filter(([name]) => !transportHeaders.has(name)));
}

/** A retry copy carries its first origin; a first delivery is its own origin. */
export function originOf(headers: Record<string, string>, here: Origin): Origin {
  const topic = headers[KafkaHeaders.originTopic];
  const partition = Number(headers[KafkaHeaders.originPartition]);
  const offset = headers[KafkaHeaders.originOffset];
  if (topic && Number.isInteger(partition) && offset && /^\d+$/.test(offset))
    return { topic, partition, offset };
  return here;
}

export function originHeaders(origin: Origin): Record<string, string> {
  return {
    [KafkaHeaders.originTopic]: origin.topic,
    [KafkaHeaders.originPartition]: String(origin.partition),
    [KafkaHeaders.originOffset]: origin.offset,
  };
}

/**
 * The message id of a Kafka message's dead letter (see `deadLetterId`): its event id header, else the
 * decoded event's id, else a hash of its bytes. The same on every delivery, retry copy and redrive of
 * one event, so an event that fails again after a redrive updates the same dead letter.
 */
export function messageIdOf(
  headers: Record<string, string>,
  value: Buffer | null,
  eventId?: string | undefined,
): string {
  return headers[EventHeaders.eventId] || eventId || contentId(value);
}

/** Whether a message is for consumer group `groupId`: addressed to it, or to no group in particular. */
export function isForGroup(headers: Record<string, string>, groupId: string): boolean {
  const target = headers[KafkaHeaders.group];
  return target === undefined || target === '' || target === groupId;
}

export function attemptOf(headers: Record<string, string>): number {
  const n = Number(headers[KafkaHeaders.attempt]);
  return Number.isInteger(n) && n >= 1 ? n : 1;
}

export function notBeforeOf(headers: IHeaders | undefined): number {
  const n = Number(readHeaders(headers)[KafkaHeaders.notBefore]);
  return Number.isFinite(n) ? n : 0;
}

/** When the first delivery of this message failed (a retry copy's header); absent: now. */
export function firstFailedAtOf(headers: Record<string, string>): Date {
  const at = Number(headers[KafkaHeaders.firstFailedAt]);
  return Number.isFinite(at) && at > 0 ? new Date(at) : new Date();
}

/**
 * The headers of a retry copy on `<topic>.retry`: the message's own, its first origin, the group it
 * is for (the retry topic is shared: the other groups skip it), the attempt it will be, when it is
 * due, when it first failed and why it failed last.
 */
export function retryCopyHeaders(
  headers: Record<string, string>,
  copy: { origin: Origin; groupId: string; attempt: number; notBefore: number; error: string },
): Record<string, string> {
  return {
    ...headers,
    ...originHeaders(copy.origin),
    [KafkaHeaders.group]: copy.groupId,
    [KafkaHeaders.attempt]: String(copy.attempt),
    [KafkaHeaders.notBefore]: String(copy.notBefore),
    [KafkaHeaders.firstFailedAt]: headers[KafkaHeaders.firstFailedAt] ?? String(Date.now()),
    [KafkaHeaders.error]: copy.error.slice(0, 1_000),
  };
}

/**
 * The headers of a copy on `<topic>.dlq`: the dead letter's headers (the message's own and the group
 * a redrive targets), its origin, the error and the attempts it took.
 */
export function deadLetterCopyHeaders(
  recordHeaders: Record<string, string>,
  copy: { origin: Origin; error: string; attempts: number },
): Record<string, string> {
  return {
    ...recordHeaders,
    ...originHeaders(copy.origin),
    [KafkaHeaders.error]: copy.error.slice(0, 4_000),
    [KafkaHeaders.attempts]: String(copy.attempts),
  };
}

/** The offset to commit once `offset` is done: Kafka commits the next offset to read. */
export function nextOffset(offset: string): string {
  return (BigInt(offset) + 1n).toString();
}

/** Routes kafkajs's own logging into the process's pino logger. */
export function kafkaLogCreator(logger: Logger): logCreator {
  const log = logger.child({ component: 'kafkajs' });
  return () =>
    ({ namespace, level, log: entry }: LogEntry) => {
      const { message, timestamp: _timestamp, ...extra } = entry;
      const fields = { namespace, ...extra };
      if (level === logLevel.ERROR) log.error(fields, message);
      else if (level === logLevel.WARN) log.warn(fields, message);
      else if (level === logLevel.INFO) log.info(fields, message);
      else log.debug(fields, message);
    };
}
