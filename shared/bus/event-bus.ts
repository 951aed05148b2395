import type { EventEnvelope } from '../domain/events.ts';
import type { DeadLetterRecord } from '../dead-letters/dead-letter.ts';
import type { TraceCarrier } from '../observability/tracing/trace-context.ts';

export type BusKind = 'bullmq' | 'kafka' | 'rabbitmq' | 'sqs';

/** Metadata of one delivery, for logs and retry decisions. */
export interface Delivery {
  /** 1 on the first delivery; grows with each retry. */
  attempt: number;
  transport: BusKind;
  /** The message's W3C trace headers (`traceparent`, `tracestate`), when it carries them. */
  trace?: TraceCarrier | undefined;
}

/**
 * Projects one event. Resolve only once its effect is committed; the bus acknowledges after that.
 * Throw {@link PoisonMessageError} for an event that can never succeed (dead-lettered at once);
 * any other error is retried with exponential backoff, then dead-lettered.
 */
export type EventHandler = (event: EventEnvelope, delivery: Delivery) => Promise<void>;

export interface Subscription {
  /** Stops taking new deliveries, waits for in-flight handlers, closes the consumer. */
  close(): Promise<void>;
}

/**
 * One contract, three transports (BullMQ, Kafka, RabbitMQ): at-least-once delivery, per-key ordering
 * where the transport gives it, bounded prefetch, retries with backoff, dead letters with the original
 * bytes, headers, error, attempts and origin. Consumers must be idempotent.
 */
export interface EventBus {
  readonly kind: BusKind;
  /** Connects and declares topology (topics, exchanges, queues, bindings) idempotently. */
  start(): Promise<void>;
  /** Publishes durably: resolves only once the broker has confirmed every event. */
  publish(events: readonly EventEnvelope[]): Promise<void>;
  /**
   * Starts a consumer of subscription group `group` with bounded prefetch. Every group gets every event
   * published once it has subscribed (see each bus for what it gets from before); the subscribers of
   * one group compete — each event is handled by one of them (at least once). Retries and dead letters
   * stay within the group, and a redrive goes back to that group only. `group` names a queue, consumer
   * group or topic suffix: see {@link assertGroupName}.
   */
  subscribe(group: string, handler: EventHandler): Promise<Subscription>;
  /** Re-publishes a dead letter's original bytes and headers to where it came from (its group only). */
  redrive(deadLetter: DeadLetterRecord): Promise<void>;
  close(): Promise<void>;
}

/** Letters, digits, `.`, `_`, `-` (first a letter or digit), at most 100: valid in every broker's names and in dead-letter ids. */
const GROUP_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$/;

export function isGroupName(group: string): boolean {
  return GROUP_NAME.test(group);
}

/** @throws {Error} when `group` cannot name a subscription group on every bus. */
export function assertGroupName(group: string): void {
  if (!isGroupName(group)) {
    throw new Error(
      `invalid subscription group ${JSON.stringify(group)}: use letters, digits, ".", "_" and "-" (at most 100)`,
    );
  }
}
