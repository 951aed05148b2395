import { randomUUID } from 'node:crypto';
import type { Delivery, EventHandler } from '../../shared/bus/event-bus.ts';
import type { EventEnvelope } from '../../shared/domain/events.ts';

/** Fixtures of the EventBus contract: valid events on one fixed day, and a recording handler. */

export const DAY = '2025-01-02';

/** A valid `order.placed` event; `key` is the order id. */
export function placedEvent(
  orderId: string = randomUUID(),
  totalCents = 1_000,
  customerId = 'cust-1',
): EventEnvelope {
  const at = `${DAY}T10:00:00.000Z`;
  return {
    eventId: randomUUID(),
    type: 'order.placed',
    version: 1,
    key: orderId,
    correlationId: `corr-${randomUUID()}`,
    occurredAt: at,
    payload: {
      orderId,
      customerId,
      currency: 'EUR',
      totalCents,
      items: [{ sku: 'sku-1', quantity: 1, unitPriceCents: totalCents }],
      attempts: 1,
      acceptedAt: at,
      completedAt: at,
    },
  };
}

/** A valid `order.rejected` event; `key` is the order id. */
export function rejectedEvent(orderId: string = randomUUID(), customerId = 'cust-2'): EventEnvelope {
  const at = `${DAY}T11:00:00.000Z`;
  return {
    eventId: randomUUID(),
    type: 'order.rejected',
    version: 1,
    key: orderId,
    correlationId: `corr-${randomUUID()}`,
    occurredAt: at,
    payload: {
      orderId,
      customerId,
      currency: 'EUR',
      totalCents: 500,
      items: [{ sku: 'sku-2', quantity: 1, unitPriceCents: 500 }],
      attempts: 1,
      acceptedAt: at,
      rejectedAt: at,
      reason: 'currency not supported',
      code: 'currency.unsupported',
    },
  };
}

export interface Received {
  event: EventEnvelope;
  delivery: Delivery;
  atMs: number;
}

/** A handler that records every delivery, then runs `then` (which may throw to fail the delivery). */
export function recorder(
  then: (event: EventEnvelope, delivery: Delivery) => Promise<void> = async () => undefined,
) {
  const received: Received[] = [];
  const handler: EventHandler = async (event, delivery) => {
    received.push({ event, delivery, atMs: Date.now() });
    await then(event, delivery);
  };
  const of = (eventId: string) => received.filter((r) => r.event.eventId === eventId);
  return { received, handler, of };
}

/** How many deliveries a sentinel fails (plain errors: retried with backoff) before it succeeds. */
export const SENTINEL_FAILURES = 2;

/**
 * A {@link recorder} that also handles sentinels: events made by `sentinel()` fail their first
 * {@link SENTINEL_FAILURES} deliveries, then succeed. A sentinel published once a watched event was
 * settled and seen succeeding went through the transport's retries and backoff itself: a redelivery of
 * the watched event would have come meanwhile. A positive signal to wait for, instead of a sleep.
 */
export function sentinelRecorder(
  then: (event: EventEnvelope, delivery: Delivery) => Promise<void> = async () => undefined,
) {
  const sentinels = new Set<string>();
  const rec = recorder(async (event, delivery) => {
    if (!sentinels.has(event.eventId)) return then(event, delivery);
    if (delivery.attempt <= SENTINEL_FAILURES) {
      throw new Error(`sentinel fails attempt ${delivery.attempt}`);
    }
  });
  return {
    ...rec,
    /** A new sentinel event (of `key`: on Kafka, behind the watched event in its partition). */
    sentinel(key?: string): EventEnvelope {
      const event = placedEvent(key);
      sentinels.add(event.eventId);
      return event;
    },
    /** Whether the sentinel succeeded. */
    passed: (eventId: string) => rec.of(eventId).some((r) => r.delivery.attempt > SENTINEL_FAILURES),
  };
}
