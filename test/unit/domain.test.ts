import { describe, expect, it } from 'vitest';
import {
  decideOrder,
  OrderJobSchema,
  orderTotalCents,
  PlaceOrderSchema,
} from '../../modules/orders/domain.ts';
import { planOrder } from '../../modules/orders/worker/handler.ts';

const order = {
  customerId: 'c-42',
  currency: 'EUR',
  items: [{ sku: 'sku-1', quantity: 2, unitPriceCents: 1250 }],
};

describe('order domain', () => {
  it('computes the total in minor units on the server', () => {
    expect(orderTotalCents(order.items)).toBe(2500);
    expect(orderTotalCents([...order.items, { sku: 'b', quantity: 3, unitPriceCents: 1 }])).toBe(2503);
  });

  it('accepts supported currencies and rejects others with a stable code', () => {
    expect(decideOrder(order, ['EUR'])).toEqual({ kind: 'accept' });
    expect(decideOrder({ ...order, currency: 'XTS' }, ['EUR'])).toMatchObject({
      kind: 'reject',
      code: 'currency.unsupported',
    });
  });

  it('validates orders strictly', () => {
    expect(PlaceOrderSchema.safeParse(order).success).toBe(true);
    expect(PlaceOrderSchema.safeParse({ ...order, total: 5 }).success).toBe(false); // unknown field
    expect(PlaceOrderSchema.safeParse({ ...order, items: [] }).success).toBe(false);
    expect(PlaceOrderSchema.safeParse({ ...order, currency: 'eur' }).success).toBe(false);
    expect(PlaceOrderSchema.safeParse({ ...order, customerId: 'a b' }).success).toBe(false);
    expect(
      PlaceOrderSchema.safeParse({ ...order, items: [{ sku: 'x', quantity: 1.5, unitPriceCents: 1 }] })
        .success,
    ).toBe(false);
    expect(
      PlaceOrderSchema.safeParse({ ...order, items: [{ sku: 'x', quantity: 1, unitPriceCents: -1 }] })
        .success,
    ).toBe(false);
  });

  it('plans a completed order with an order.placed event carrying the correlation id', () => {
    const job = OrderJobSchema.parse({
      orderId: '2b1f9b3c-7a55-4a1e-9d0c-1f2e3d4c5b6a',
      correlationId: 'corr-12345678',
      acceptedAt: '2026-01-01T00:00:00.000Z',
      order,
    });
    const { row, event } = planOrder({ job, attempt: 2 }, ['EUR'], new Date('2026-01-01T00:00:01.000Z'));
    expect(row).toMatchObject({ status: 'completed', totalCents: 2500, attempts: 2 });
    expect(event).toMatchObject({
      type: 'order.placed',
      key: job.orderId,
      correlationId: 'corr-12345678',
      version: 1,
    });
    const rejected = planOrder(
      { job: { ...job, order: { ...order, currency: 'XTS' } }, attempt: 1 },
      ['EUR'],
      new Date(),
    );
    expect(rejected.row.status).toBe('rejected');
    expect(rejected.event.type).toBe('order.rejected');
  });
});
