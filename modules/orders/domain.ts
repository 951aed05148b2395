import { z } from 'zod';
import { CorrelationIdSchema, IdSchema } from '../../shared/domain/ids.ts';
import { freeText } from '../../shared/domain/text.ts';
import { TenantIdSchema } from '../../shared/modules/tenant.ts';

export const OrderItemSchema = z.strictObject({
  sku: IdSchema.describe('Stock keeping unit'),
  quantity: z.number().int().min(1).max(10_000),
  /** Money in integer minor units (cents). */
  unitPriceCents: z.number().int().min(0).max(100_000_000),
});

/** What a producer posts. */
export const PlaceOrderSchema = z.strictObject({
  customerId: IdSchema,
  currency: z.string().regex(/^[A-Z]{3}$/, 'an ISO 4217 code such as EUR'),
  items: z.array(OrderItemSchema).min(1).max(100),
});
export type PlaceOrder = z.infer<typeof PlaceOrderSchema>;
export type OrderItem = z.infer<typeof OrderItemSchema>;

export const OrderStatusSchema = z.enum([
  'queued',
  'processing',
  'completed',
  'rejected',
  'dead_lettered',
  'cancelled',
]);
export type OrderStatus = z.infer<typeof OrderStatusSchema>;

/** The BullMQ job data of queue `orders` (the command). Foreign producers must send this shape. */
export const OrderJobSchema = z.strictObject({
  orderId: z.uuid(),
  correlationId: CorrelationIdSchema,
  acceptedAt: z.iso.datetime(),
  /**
   * The API key (its id) that posted the order; absent for a foreign producer's job. Free text a
   * foreign producer may set: no NUL, noncharacter or lone surrogate (see shared/domain/text.ts).
   */
  acceptedBy: freeText({ max: 128 }).optional(),
  /**
   * Who the order is for, for fairness (shared/fairness): the accepting key's id, or `<key id>/<sub>`
   * when the key named a sub-tenant. Absent for jobs from before it existed and foreign producers'.
   */
  tenant: TenantIdSchema.optional(),
  /** The batch it was posted in (POST /v1/orders/batch): its decision is counted there (shared/batches). */
  batchId: z.uuid().optional(),
  /** The order this one replays (a bulk `replay`, shared/bulk): the same order posted again under a new id. */
  replayOf: z.uuid().optional(),
  order: PlaceOrderSchema,
});
export type OrderJob = z.infer<typeof OrderJobSchema>;

/** The server computes the total; clients never send one. */
export function orderTotalCents(items: readonly OrderItem[]): number {
  return items.reduce((sum, i) => sum + i.quantity * i.unitPriceCents, 0);
}

export type Decision = { kind: 'accept' } | { kind: 'reject'; reason: string; code: string };

/** Pure business rules: decides whether a well-formed order is accepted. */
export function decideOrder(order: PlaceOrder, supportedCurrencies: readonly string[]): Decision {
  if (!supportedCurrencies.includes(order.currency)) {
    return {
      kind: 'reject',
      code: 'currency.unsupported',
      reason: `currency ${order.currency} is not supported`,
    };
  }
  if (!Number.isSafeInteger(orderTotalCents(order.items))) {
    return { kind: 'reject', code: 'total.too_large', reason: 'order total exceeds the supported range' };
  }
  return { kind: 'accept' };
}
