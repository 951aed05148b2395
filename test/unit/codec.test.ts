import { describe, expect, it } from 'vitest';
import { backoffDelayMs, decodeEvent, encodeEvent } from '../../shared/bus/codec.ts';
import type { EventEnvelope } from '../../shared/domain/events.ts';
import { createEventCatalog, loadEventCatalog } from '../../workers/projections/projector.ts';
import { PoisonMessageError } from '../../shared/errors/domain.ts';

const event: EventEnvelope = {
  eventId: '0c2f0a4e-5b8c-4c1e-9a3d-6f7e8d9c0b1a',
  type: 'order.placed',
  version: 1,
  key: '2b1f9b3c-7a55-4a1e-9d0c-1f2e3d4c5b6a',
  correlationId: 'corr-12345678',
  occurredAt: '2026-01-01T00:00:00.000Z',
  payload: {
    orderId: '2b1f9b3c-7a55-4a1e-9d0c-1f2e3d4c5b6a',
    customerId: 'c-1',
    currency: 'EUR',
    totalCents: 100,
    items: [{ sku: 's', quantity: 1, unitPriceCents: 100 }],
    attempts: 1,
    acceptedAt: '2026-01-01T00:00:00.000Z',
    completedAt: '2026-01-01T00:00:00.000Z',
  },
};

describe('event codec', () => {
  it('round-trips an event and sets the brief’s headers', () => {
    const { body, headers } = encodeEvent(event);
    expect(decodeEvent(body)).toEqual(event);
    expect(headers).toEqual({
      'event-id': event.eventId,
      'event-type': 'order.placed',
      'event-version': '1',
      'correlation-id': 'corr-12345678',
    });
  });

  it('flags poison: empty, not JSON, not an event envelope', () => {
    expect(() => decodeEvent(Buffer.alloc(0))).toThrow(PoisonMessageError);
    expect(() => decodeEvent('{nope')).toThrow(PoisonMessageError);
    expect(() => decodeEvent(JSON.stringify({ ...event, type: 'exploded' }))).toThrow(PoisonMessageError);
    expect(() => decodeEvent(JSON.stringify({ ...event, eventId: 'not-a-uuid' }))).toThrow(
      PoisonMessageError,
    );
    expect(() => decodeEvent(JSON.stringify({ ...event, payload: 'x' }))).toThrow(PoisonMessageError);
  });

  it("leaves the payload to its module: the projector's catalog checks it against the registry", async () => {
    const catalog = await loadEventCatalog();
    expect(catalog.check(event)).toEqual(event);
    expect(() => catalog.check({ ...event, type: 'order.exploded' })).toThrow(PoisonMessageError);
    expect(() => catalog.check({ ...event, version: 2 })).toThrow(PoisonMessageError);
    expect(() => catalog.check({ ...event, payload: { ...event.payload, totalCents: -1 } })).toThrow(
      /payload does not match/,
    );
    // Every registered module's events have one owner; a second module declaring a type is refused.
    const [orders] = catalog.projectors;
    expect(() => createEventCatalog([orders!, { ...orders! }])).toThrow(/declared by modules/);
  });

  it('backs off exponentially with jitter, capped', () => {
    expect(backoffDelayMs(1, 100, 10_000, () => 0)).toBe(50);
    expect(backoffDelayMs(1, 100, 10_000, () => 1)).toBe(100);
    expect(backoffDelayMs(4, 100, 10_000, () => 1)).toBe(800);
    expect(backoffDelayMs(30, 100, 10_000, () => 1)).toBe(10_000);
  });
});
