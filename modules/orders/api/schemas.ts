import { z } from '@hono/zod-openapi';
import { IdSchema } from '../../../shared/domain/ids.ts';
import { ProblemSchema } from '../../../shared/http/schemas.ts';
import { OrderItemSchema, OrderStatusSchema, PlaceOrderSchema } from '../domain.ts';

// The orders module's OpenAPI schemas, named by its routes (commands.ts, queries.ts).
// Shared schemas may be created before zod is extended with .openapi(): wrap them in fresh API-side schemas.
export const PlaceOrderBody = z.strictObject(PlaceOrderSchema.shape).openapi('PlaceOrder', {
  example: {
    customerId: 'c-42',
    currency: 'EUR',
    items: [{ sku: 'sku-1', quantity: 2, unitPriceCents: 1250 }],
  },
});

export const AcceptedOrderSchema = z
  .object({ orderId: z.uuid(), status: z.literal('queued'), correlationId: z.string() })
  .openapi('AcceptedOrder');

export const BatchBody = z.strictObject({ orders: z.array(z.unknown()).min(1) }).openapi('PlaceOrderBatch', {
  description: 'Up to API_BATCH_MAX_ORDERS orders; each is validated on its own.',
});

export const BatchResultSchema = z
  .object({
    orders: z.array(
      z.union([
        z.object({ orderId: z.uuid(), status: z.literal('queued') }),
        z.object({ error: ProblemSchema }),
      ]),
    ),
  })
  .openapi('PlaceOrderBatchResult');

// Order, CustomerOrders and Stats are named in the OpenAPI document by the orders module's query routes,
// extended there with what other modules add (refunds): naming these bases too made each named schema
// an allOf of a reference to itself.
export const OrderViewSchema = z.object({
  orderId: z.uuid(),
  customerId: z.string().nullable(),
  currency: z.string().nullable(),
  totalCents: z.number().int().nullable(),
  items: z.array(OrderItemSchema).nullable(),
  status: OrderStatusSchema,
  attempts: z.number().int(),
  lastError: z.string().nullable(),
  correlationId: z.string().nullable(),
  acceptedAt: z.string().nullable(),
  completedAt: z.string().nullable(),
  updatedAt: z.string().nullable(),
});

export const OrderIdParam = z.object({
  orderId: z.uuid().openapi({ param: { name: 'orderId', in: 'path' } }),
});

export const IdsQuery = z.object({
  ids: z.string().openapi({
    param: { name: 'ids', in: 'query' },
    example: 'id1,id2',
    description: 'Up to 100 comma-separated order ids',
  }),
});

export const CustomerParam = z.object({ customerId: IdSchema });
export const PageQuery = z.object({
  limit: z.coerce
    .number()
    .int()
    .min(1)
    .max(200)
    .default(50)
    .openapi({ param: { name: 'limit', in: 'query' } }),
  cursor: z
    .string()
    .max(512)
    .optional()
    .openapi({ param: { name: 'cursor', in: 'query' } }),
});

export const TotalsSchema = z.object({
  currency: z.string(),
  completedCount: z.number().int(),
  rejectedCount: z.number().int(),
  revenueCents: z.number().int(),
});

export const CustomerOrdersSchema = z.object({
  customerId: z.string(),
  totals: z.array(TotalsSchema),
  orders: z.array(OrderViewSchema),
  nextCursor: z.string().nullable(),
});

export const StatsTotalsSchema = TotalsSchema.extend({ deadLetteredCount: z.number().int() });
export const StatsDailySchema = StatsTotalsSchema.extend({ day: z.string() });
export const StatsSchema = z.object({
  orderCount: z.number().int(),
  totals: z.array(StatsTotalsSchema),
  daily: z.array(StatsDailySchema),
});
