import type { ModuleDefinition } from '../../shared/modules/module.ts';
import { RefundJobSchema } from './domain.ts';
import { refundEvents } from './events.ts';

/**
 * Refunds: `POST /v1/orders/{orderId}/refunds` → queue `refunds` → decided against the order in the
 * write model (never past its total) → `refund.*` events → `refund_view`, refund stats, and the
 * order's `refundedCents`. Builds on the orders module (its `orders` table).
 */
export const refundsModule: ModuleDefinition = {
  name: 'refunds',
  description: 'Refunds of completed orders, never exceeding what was paid',
  jobName: 'refund-order',
  jobSchema: RefundJobSchema,
  events: refundEvents,
  migrations: new URL('./migrations/', import.meta.url),
  // Refunds are rare and each locks its order row: small batches, fewer at once.
  queueDefaults: { concurrency: 20, batchSize: 20 },
  // A refund is a command about an order: the key that places orders (orders:write) refunds them, and
  // the key that reads orders (orders:read) reads their refunds — including the `Location` of the
  // 202 it got. No refunds:* scopes for producers to learn and operators to hand out.
  scopes: { write: 'orders:write', read: 'orders:read' },
  paths: ['/v1/orders/:orderId/refunds', '/v1/refunds'],
  // Refund events are keyed by their order: the refund they are about is in the payload.
  // POST /v1/refunds/{refundId}/cancel while the refund is not decided (api/routes/cancel.ts).
  cancel: {
    path: '/v1/refunds/:refundId',
    load: async () => (await import('./cancel.ts')).refundCancellation,
  },
  commandIdOf: (event) => (typeof event.payload.refundId === 'string' ? event.payload.refundId : undefined),
  api: async () => (await import('./api/index.ts')).refundsApi,
  worker: async () => (await import('./worker/index.ts')).refundsWorker,
};
