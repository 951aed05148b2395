import type { ModuleDefinition } from '../../shared/modules/module.ts';
import { OrderJobSchema } from './domain.ts';
import { orderEvents } from './events.ts';

/** Orders: `POST /v1/orders` → queue `orders` → decided in `orders` → `order.*` events → `order_view`, stats. */
export const ordersModule: ModuleDefinition = {
  name: 'orders',
  description: 'Orders placed by producers: decided by business rules and the payment service',
  jobName: 'place-order',
  jobSchema: OrderJobSchema,
  events: orderEvents,
  // Its first tables came with the core's migrations (shared/db/migrations), before modules existed.
  migrations: new URL('./migrations/', import.meta.url),
  queueDefaults: {},
  scopes: { write: 'orders:write', read: 'orders:read' },
  paths: ['/v1/orders', '/v1/customers', '/v1/stats'],
  // POST /v1/orders/{orderId}/cancel while the order is not decided (api/routes/cancel.ts).
  cancel: {
    path: '/v1/orders/:orderId',
    load: async () => (await import('./cancel.ts')).orderCancellation,
  },
  // Bulk action `replay` (shared/bulk): a rejected or dead-lettered order posted again, from its row.
  replay: { load: async () => (await import('./replay.ts')).orderReplay },
  api: async () => (await import('./api/index.ts')).ordersApi,
  worker: async () => (await import('./worker/index.ts')).ordersWorker,
};
