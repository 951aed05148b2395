import { isUuid } from '../../../shared/domain/ids.ts';
import { createRoute, z } from '@hono/zod-openapi';
import { OrderJobSchema, orderTotalCents } from '../domain.ts';
import { ValidationError } from '../../../shared/errors/domain.ts';
import { OrderNotFoundError } from '../errors.ts';
import { extend, extendedShape, type ModuleApiContext } from '../../../shared/http/modules.ts';
import type { Pool } from '../../../shared/db/pool.ts';
import { registerCommandResource } from '../../../shared/http/command-resources.ts';
import { settleCancels } from '../../../shared/commands/cancel.ts';
import type { CommandView } from '../../../shared/modules/module.ts';
import { attemptsMadeOf, lastErrorOf } from '../../../shared/queue/job-delivery.ts';
import {
  customerOrders,
  customerTotals,
  decodeCursor,
  findDecidedOrders,
  findOrders,
  stats,
  type OrderView,
} from './read-models.sql.ts';
import { ProblemSchema, problemResponses } from '../../../shared/http/schemas.ts';
import {
  CustomerOrdersSchema,
  CustomerParam,
  IdsQuery,
  OrderIdParam,
  OrderViewSchema,
  PageQuery,
  StatsDailySchema,
  StatsSchema,
  StatsTotalsSchema,
  TotalsSchema,
} from './schemas.ts';

/** The query routes, their schemas carrying what other modules add to orders and totals. */
function queryRoutes(ctx: ModuleApiContext) {
  const Order = OrderViewSchema.extend({
    tenant: z
      .string()
      .nullable()
      .describe(
        'Who the order is for: the API key that posted it, or <key id>/<sub-tenant> when the key named one with the Conveyor-Tenant header; null for orders from before tenants, or enqueued by a foreign producer without one',
      ),
    replayOf: z
      .uuid()
      .optional()
      .describe(
        'The order this one replays (a bulk replay posted it again under a new id); absent otherwise',
      ),
    ...extendedShape(ctx.extensions('order')),
  }).openapi('Order');
  const CustomerOrders = CustomerOrdersSchema.extend({
    totals: z.array(TotalsSchema.extend(extendedShape(ctx.extensions('customer-totals')))),
    orders: z.array(Order),
  }).openapi('CustomerOrders');
  const Stats = StatsSchema.extend({
    totals: z.array(StatsTotalsSchema.extend(extendedShape(ctx.extensions('stats-totals')))),
    daily: z.array(StatsDailySchema.extend(extendedShape(ctx.extensions('stats-daily')))),
  }).openapi('Stats');
  const getOrder = createRoute({
    method: 'get',
    path: '/v1/orders/{orderId}',
    tags: ['orders'],
    summary: 'One order from the read model',
    request: { params: OrderIdParam },
    responses: {
      200: { description: 'The order', content: { 'application/json': { schema: Order } } },
      404: {
        description: 'Unknown order',
        content: { 'application/problem+json': { schema: ProblemSchema } },
      },
      ...problemResponses,
    },
  });

  const getOrders = createRoute({
    method: 'get',
    path: '/v1/orders',
    tags: ['orders'],
    summary: 'Many orders in one call (never loop over single GETs)',
    request: { query: IdsQuery },
    responses: {
      200: {
        description: 'Found orders and the ids not found',
        content: {
          'application/json': {
            schema: z.object({ orders: z.array(Order), missing: z.array(z.string()) }),
          },
        },
      },
      ...problemResponses,
    },
  });

  const getCustomerOrders = createRoute({
    method: 'get',
    path: '/v1/customers/{customerId}/orders',
    tags: ['orders'],
    summary: "A customer's orders, newest first, with cursor pagination and totals",
    request: { params: CustomerParam, query: PageQuery },
    responses: {
      200: {
        description: 'A page of orders',
        content: { 'application/json': { schema: CustomerOrders } },
      },
      ...problemResponses,
    },
  });

  const getStats = createRoute({
    method: 'get',
    path: '/v1/stats',
    tags: ['stats'],
    summary: 'Order count, revenue per currency and a per-day series (pre-aggregated)',
    request: {
      query: z.object({
        days: z.coerce
          .number()
          .int()
          .min(1)
          .max(366)
          .default(30)
          .openapi({ param: { name: 'days', in: 'query' } }),
      }),
    },
    responses: {
      200: { description: 'Stats', content: { 'application/json': { schema: Stats } } },
      ...problemResponses,
    },
  });
  return { getOrder, getOrders, getCustomerOrders, getStats };
}

/**
 * The orders module's queries on `app`: one order, many by id, a customer's orders and the stats.
 * Orders are looked up in the read model (on the read replica, if any, then on the primary), then the
 * write model, then the queue, so an accepted order never reads as 404. Lists and stats read the
 * replica.
 */
export function orderQueryRoutes(ctx: ModuleApiContext): void {
  const { app, deps, redisCall } = ctx;
  const ordersQueue = ctx.commands.queue;
  const { getOrder, getOrders, getCustomerOrders, getStats } = queryRoutes(ctx);
  const { reads } = deps;
  // Extensions read the pool their rows came from: an order and its refunds as of one moment.
  const withExtensions = <Row extends object>(
    resource: string,
    pool: Pool,
    rows: readonly Row[],
    scope?: Record<string, string>,
  ) => extend(ctx.extensions(resource), pool, rows, scope);

  /**
   * Orders neither projected nor decided, from their jobs. A job found completed or failed here was
   * decided between the two reads (or its decision is being written): it reads as `processing`.
   */
  async function fromQueue(ids: readonly string[]): Promise<OrderView[]> {
    const found = await Promise.all(
      ids.map(async (id) => {
        const job = await redisCall(() => ordersQueue.getJob(id));
        if (!job) return null;
        const state = await redisCall(() => job.getState());
        const parsed = OrderJobSchema.safeParse(job.data);
        if (!parsed.success) return null;
        const { order } = parsed.data;
        const view: OrderView = {
          orderId: id,
          customerId: order.customerId,
          currency: order.currency,
          totalCents: orderTotalCents(order.items),
          items: order.items,
          status: ['waiting', 'delayed', 'prioritized', 'waiting-children'].includes(state)
            ? 'queued'
            : 'processing',
          // Ours: BullMQ's `attemptsMade` does not count the delivery core's retries.
          attempts: attemptsMadeOf(job),
          lastError: lastErrorOf(job),
          correlationId: parsed.data.correlationId,
          acceptedAt: parsed.data.acceptedAt,
          completedAt: null,
          updatedAt: null,
          tenant: parsed.data.tenant ?? null,
          ...(parsed.data.replayOf === undefined ? {} : { replayOf: parsed.data.replayOf }),
        };
        return view;
      }),
    );
    return found.filter((v): v is OrderView => v !== null);
  }

  /** The read model, then the write model for what it lacks (decided, not yet projected). */
  async function fromPrimary(pool: Pool, ids: readonly string[]): Promise<OrderView[]> {
    const projected = await findOrders(pool, ids);
    const seen = new Set(projected.map((v) => v.orderId));
    return [
      ...projected,
      ...(await findDecidedOrders(
        pool,
        ids.filter((id) => !seen.has(id)),
      )),
    ];
  }

  /**
   * Orders by id, wherever they are: the read model on the read replica (when configured); else the
   * primary's read model, then its write model (decided, not yet projected — its job may already be
   * trimmed from Redis); else the queue (waiting or in progress); else the primary once more. Only an
   * id none of them knows is missing: an accepted order never reads as 404, however far the replica
   * lags. The last read closes the window between the first two: an order decided after the write
   * model was read may have its job removed (`removeOnComplete`, `ORDERS_KEEP_COMPLETED_SECONDS=0`)
   * before the queue is read — but a job leaves Redis only after its decision committed, so the
   * primary, read after the queue missed it, has it.
   */
  async function lookUp(ids: readonly string[]): Promise<Map<string, OrderView>> {
    const groups = await reads.byIds(ids, (v: OrderView) => v.orderId, findOrders, fromPrimary);
    const found = new Set(groups.flatMap((g) => g.rows.map((v) => v.orderId)));
    const unknown = ids.filter((id) => !found.has(id));
    const queued = await fromQueue(unknown);
    if (queued.length > 0) groups.push({ pool: reads.primary, rows: queued });
    const inQueue = new Set(queued.map((v) => v.orderId));
    const gone = unknown.filter((id) => !inQueue.has(id));
    // Decided since the first read (or never accepted: then this costs one more miss). A cancel
    // removes its job just before it commits: its row is read once it ended (shared/commands/cancel.ts).
    if (gone.length > 0) await settleCancels(reads.primary, ctx.commands.module.name, gone);
    const decided = gone.length > 0 ? await fromPrimary(reads.primary, gone) : [];
    if (decided.length > 0) groups.push({ pool: reads.primary, rows: decided });
    const extended = await Promise.all(groups.map((g) => withExtensions('order', g.pool, g.rows)));
    return new Map(extended.flat().map((v) => [v.orderId, v]));
  }

  // `Prefer: wait` on POST /v1/orders and this GET, and GET /v1/orders/{orderId}/events (api/results):
  // the core reads an order exactly as this GET does.
  registerCommandResource(app, {
    module: ctx.commands.module.name,
    path: '/v1/orders/:orderId',
    read: async (id) => {
      if (!isUuid(id)) return undefined;
      const order = (await lookUp([id])).get(id);
      return order && orderCommandView(order);
    },
  });

  app.openapi(getOrder, async (c) => {
    const { orderId } = c.req.valid('param');
    const order = (await lookUp([orderId])).get(orderId);
    if (!order) throw new OrderNotFoundError(orderId);
    return c.json(order, 200);
  });

  app.openapi(getOrders, async (c) => {
    const ids = [
      ...new Set(
        c.req
          .valid('query')
          .ids.split(',')
          .map((s) => s.trim())
          .filter(Boolean),
      ),
    ];
    if (ids.length === 0 || ids.length > 100) {
      throw new ValidationError('ids must list 1 to 100 order ids', [
        { path: 'ids', message: '1 to 100 ids' },
      ]);
    }
    const bad = ids.filter((id): boolean => !isUuid(id));
    if (bad.length > 0) {
      throw new ValidationError(
        'ids must be order ids (UUIDs)',
        bad.slice(0, 10).map((id) => ({ path: 'ids', message: `not an order id: ${id.slice(0, 64)}` })),
      );
    }
    const all = await lookUp(ids);
    return c.json(
      {
        orders: ids.flatMap((id) => (all.has(id) ? [all.get(id)!] : [])),
        missing: ids.filter((id) => !all.has(id)),
      },
      200,
    );
  });

  app.openapi(getCustomerOrders, async (c) => {
    const { customerId } = c.req.valid('param');
    const { limit, cursor } = c.req.valid('query');
    const decoded = cursor === undefined ? null : decodeCursor(cursor);
    if (cursor !== undefined && decoded === null) {
      throw new ValidationError('invalid cursor', [
        { path: 'cursor', message: 'use nextCursor from a previous page' },
      ]);
    }
    const body = await reads.read(async (pool) => {
      const [page, totals] = await Promise.all([
        customerOrders(pool, customerId, limit, decoded),
        customerTotals(pool, customerId),
      ]);
      const [orders, extendedTotals] = await Promise.all([
        withExtensions('order', pool, page.orders),
        withExtensions('customer-totals', pool, totals, { customerId }),
      ]);
      return { customerId, totals: extendedTotals, ...page, orders };
    });
    return c.json(body, 200);
  });

  app.openapi(getStats, async (c) => {
    const { days } = c.req.valid('query');
    const body = await reads.read(async (pool) => {
      const s = await stats(pool, days);
      const [totals, daily] = await Promise.all([
        withExtensions('stats-totals', pool, s.totals),
        withExtensions('stats-daily', pool, s.daily),
      ]);
      return { orderCount: s.totals.reduce((n, t) => n + t.completedCount, 0), totals, daily };
    });
    return c.json(body, 200);
  });
}

const FINAL_ORDER_STATUSES: ReadonlySet<string> = new Set([
  'completed',
  'rejected',
  'dead_lettered',
  'cancelled',
]);

/** An order as the core's results see it: its GET body, final or not, projected once `updatedAt` is set. */
function orderCommandView(order: OrderView): CommandView {
  return {
    body: order as unknown as Record<string, unknown>,
    status: order.status,
    final: FINAL_ORDER_STATUSES.has(order.status),
    attempts: order.attempts,
    lastError: order.lastError,
    projected: order.updatedAt !== null,
  };
}
