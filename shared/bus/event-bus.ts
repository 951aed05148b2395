import type { EventEnvelope } from '../domain/events.ts';
import type { DeadLetterRecord } from '../dead-letters/dead-letter.ts';

export type BusKind = 'bullmq' | 'kafka' | 'rabbitmq';

/** Metadata of one delivery, for logs and retry decisions. */
export interface Delivery {
  /** 1 on the first delivery; grows with each retry. */
  attempt: number;
  transport: BusKind;
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
  /** Starts a consumer (group) with bounded prefetch. */
  subscribe(group: string, handler: EventHandler): Promise<Subscription>;
  /** Re-publishes a dead letter's original bytes and headers to where it came from. */
  redrive(deadLetter: DeadLetterRecord): Promise<void>;
  close(): Promise<void>;
}
