import type { ModuleDefinition } from '../module.ts';
import { OrderJobSchema } from './domain.ts';
import { orderEvents } from './events.ts';

/** Orders: `POST /v1/orders` → queue `orders` → decided in `orders` → `order.*` events → `order_view`, stats. */
export const ordersModule: ModuleDefinition = {
  name: 'orders',
  description: 'Orders placed by producers: decided by business rules and the payment service',
  jobName: 'place-order',
  jobSchema: OrderJobSchema,
  events: orderEvents,
  // Its tables came with the core's first migrations (shared/db/migrations), before modules existed.
  queueDefaults: {},
  api: async () => (await import('./api/index.ts')).ordersApi,
  worker: async () => (await import('./worker/index.ts')).ordersWorker,
};
