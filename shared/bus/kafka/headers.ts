import { logLevel, type IHeaders, type LogEntry, type logCreator } from 'kafkajs';
import type { Logger } from '../../observability/logger.ts';

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

/** Where a message was first consumed: the identity of its dead letter and the target of a redrive. */
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
 * Deterministic per original message and group, so recording a dead letter twice is harmless (no ":"
 * allowed). `scope` tells apart the dead letters of two groups failing on one message; the default
 * group has none, so its ids are what they always were.
 */
export function deadLetterId(origin: Origin, scope?: string): string {
  const base = `${origin.topic}-${origin.partition}-${origin.offset}`;
  return scope ? `kafka-${scope}-${base}` : `kafka-${base}`;
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
