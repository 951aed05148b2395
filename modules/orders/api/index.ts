import type { ModuleApiFactory } from '../../../shared/modules/module.ts';
import { orderCommandRoutes } from './commands.ts';
import { orderQueryRoutes } from './queries.ts';

/**
 * The orders module's HTTP routes: its commands, then its queries. Resources other modules may extend
 * (`ResourceExtensions`): `order` (one order's view), `customer-totals` and `stats-totals` (per-currency
 * totals rows).
 */
export const ordersApi: ModuleApiFactory = {
  routes(ctx) {
    orderCommandRoutes(ctx);
    orderQueryRoutes(ctx);
  },
};
