import { createHash, randomUUID } from 'node:crypto';
import { createRoute, OpenAPIHono, z } from '@hono/zod-openapi';
import type { Context } from 'hono';
import {
  OrderJobSchema,
  orderTotalCents,
  PlaceOrderSchema,
  type OrderJob,
  type PlaceOrder,
} from '../../shared/domain/order.ts';
import {
  DependencyUnavailableError,
  DomainError,
  OrderNotFoundError,
  OverloadedError,
  ValidationError,
} from '../../shared/errors/domain.ts';
import { fieldErrors, problem, type Problem } from '../../shared/errors/problem.ts';
import type { ApiDeps, ApiEnv } from '../context.ts';
import { addBulkExactly, coalescingEnqueue } from '../enqueue.ts';
import { requestLog, requestLogAt } from '../log.ts';
import { bodyLimit } from '../middleware/body-limit.ts';
import { respond } from '../middleware/headers.ts';
import { fingerprint, type StoredResponse } from '../idempotency.ts';
import {
  customerOrders,
  customerTotals,
  decodeCursor,
  findDecidedOrders,
  findOrders,
  stats,
  type OrderView,
} from '../read-models.sql.ts';
import {
  AcceptedOrderSchema,
  BatchBody,
  BatchResultSchema,
  CustomerOrdersSchema,
  CustomerParam,
  IdsQuery,
  OrderIdParam,
  OrderViewSchema,
  PageQuery,
  PlaceOrderBody,
  ProblemSchema,
  problemResponses,
  StatsSchema,
} from '../schemas.ts';
import { withDeadline } from '../../shared/runtime/deadline.ts';

const IDEMPOTENCY_HEADER = 'idempotency-key';
/** Most single-order jobs coalesced into one `addBulk`. */
const MAX_COALESCED_JOBS = 256;
const uuidRe = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** An order id derived from the idempotency claim: a retry can never enqueue a second job. */
function derivedId(...parts: string[]): string {
  const h = createHash('sha256').update(parts.join('\n')).digest('hex');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-8${h.slice(13, 16)}-${((parseInt(h[16]!, 16) & 0x3) | 0x8).toString(16)}${h.slice(17, 20)}-${h.slice(20, 32)}`;
}

/**
 * The Idempotency-Key header, documented as a plain OpenAPI parameter rather than a `request.headers`
 * schema: that would make every POST collect all its headers into an object for zod, only to learn
 * an optional string is a string. `idempotent()` validates the key itself (422 problem if invalid).
 */
const idempotencyKeyDescription =
  'Stripe-style idempotency key: 1-255 visible ASCII characters, remembered 24 h';
const IdempotencyKeyParameter = {
  name: IDEMPOTENCY_HEADER,
  in: 'header',
  required: false,
  description: idempotencyKeyDescription,
  schema: { type: 'string', description: idempotencyKeyDescription },
} as const;

const problemContent = { 'application/problem+json': { schema: ProblemSchema } };

const placeOrder = createRoute({
  method: 'post',
  path: '/v1/orders',
  tags: ['orders'],
  summary: 'Place an order (enqueued; processed asynchronously)',
  parameters: [IdempotencyKeyParameter],
  request: {
    body: { required: true, content: { 'application/json': { schema: PlaceOrderBody } } },
  },
  responses: {
    202: {
      description: 'Accepted and enqueued',
      headers: { Location: { schema: { type: 'string' } } },
      content: { 'application/json': { schema: AcceptedOrderSchema } },
    },
    ...problemResponses,
    409: { description: 'Same Idempotency-Key in flight', content: problemContent },
    413: { description: 'Body over the limit', content: problemContent },
    422: { description: 'Idempotency-Key reused with another body', content: problemContent },
  },
});

const placeBatch = createRoute({
  method: 'post',
  path: '/v1/orders/batch',
  tags: ['orders'],
  summary: 'Place up to 1,000 orders in one request (one addBulk)',
  parameters: [IdempotencyKeyParameter],
  request: {
    body: { required: true, content: { 'application/json': { schema: BatchBody } } },
  },
  responses: {
    202: {
      description: 'One result per input order, in order',
      content: { 'application/json': { schema: BatchResultSchema } },
    },
    ...problemResponses,
    409: { description: 'Same Idempotency-Key in flight', content: problemContent },
    413: { description: 'Body over the limit', content: problemContent },
    422: { description: 'Idempotency-Key reused with another body', content: problemContent },
  },
});

const getOrder = createRoute({
  method: 'get',
  path: '/v1/orders/{orderId}',
  tags: ['orders'],
  summary: 'One order from the read model',
  request: { params: OrderIdParam },
  responses: {
    200: { description: 'The order', content: { 'application/json': { schema: OrderViewSchema } } },
    404: { description: 'Unknown order', content: problemContent },
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
          schema: z.object({ orders: z.array(OrderViewSchema), missing: z.array(z.string()) }),
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
      content: { 'application/json': { schema: CustomerOrdersSchema } },
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
    200: { description: 'Stats', content: { 'application/json': { schema: StatsSchema } } },
    ...problemResponses,
  },
});

export function ordersRoutes(deps: ApiDeps): OpenAPIHono<ApiEnv> {
  const { config, ordersQueue } = deps;
  const app = new OpenAPIHono<ApiEnv>();
  const timeoutMs = config.redis.commandTimeoutMs * 2;
  let backlogCheckedAt = 0;
  let backlogOver = false;
  // Concurrent POST /v1/orders share one Redis pipeline per event-loop turn.
  const enqueue = coalescingEnqueue(ordersQueue, deps.orderJobOptions, {
    maxBatch: MAX_COALESCED_JOBS,
    maxWaitMs: 0,
    timeoutMs,
    maxInFlight: 1,
  });

  /** Redis failures become 503: nothing was enqueued, and the client may retry. */
  async function redisCall<T>(fn: () => Promise<T>): Promise<T> {
    try {
      return await withDeadline(fn(), timeoutMs, () => new DependencyUnavailableError('redis'));
    } catch (err) {
      if (err instanceof DomainError) throw err;
      throw new DependencyUnavailableError('redis');
    }
  }

  async function shedIfOverloaded(): Promise<void> {
    if (config.api.maxBacklog <= 0) return;
    if (Date.now() - backlogCheckedAt > 500) {
      const counts = await redisCall(() => ordersQueue.getJobCounts('waiting', 'delayed', 'prioritized'));
      backlogOver = Object.values(counts).reduce((a, b) => a + b, 0) >= config.api.maxBacklog;
      backlogCheckedAt = Date.now();
    }
    if (backlogOver) throw new OverloadedError();
  }

  function toJob(orderId: string, order: PlaceOrder, correlationId: string, acceptedAt: string): OrderJob {
    return { orderId, correlationId, acceptedAt, order };
  }

  /** Runs `work` under the request's Idempotency-Key (if any): replay, 422, 409 or a fresh claim. */
  async function idempotent(
    c: Context<ApiEnv>,
    body: unknown,
    work: (idSeed: string | null) => Promise<StoredResponse & { remember?: boolean }>,
  ): Promise<Response> {
    const key = c.req.header(IDEMPOTENCY_HEADER);
    if (key !== undefined && (key.length === 0 || key.length > 255 || !/^[\x21-\x7e]+$/.test(key))) {
      throw new ValidationError('invalid Idempotency-Key', [
        { path: 'Idempotency-Key', message: '1-255 visible ASCII characters' },
      ]);
    }
    const scope = c.get('principal');
    let response: StoredResponse & { remember?: boolean };
    if (key === undefined) {
      response = await work(null);
    } else {
      const fp = fingerprint(c.req.method, c.req.path, body);
      const claim = await redisCall(() => deps.idempotency.begin(scope, key, fp));
      if (claim.kind === 'replay') {
        return respond(c, JSON.stringify(claim.response.body), claim.response.status, {
          ...claim.response.headers,
          'content-type': 'application/json',
          'idempotent-replayed': 'true',
        });
      }
      try {
        response = await work(`${scope}\n${key}\n${fp}`);
      } catch (err) {
        await deps.idempotency.abort(scope, key).catch(() => undefined);
        throw err;
      }
      const { remember = true, ...stored } = response;
      // The job is enqueued: if storing the response fails, a retry still maps to the same order id.
      const done = remember
        ? deps.idempotency.complete(scope, key, fp, stored)
        : deps.idempotency.abort(scope, key);
      await done.catch((err: unknown) => {
        requestLog(c).warn({ err }, 'could not store idempotent response');
      });
    }
    return respond(c, JSON.stringify(response.body), response.status, {
      ...response.headers,
      'content-type': 'application/json',
    });
  }

  app.use('/v1/orders', bodyLimit({ maxSize: config.api.bodyLimitBytes }));
  app.use('/v1/orders/batch', bodyLimit({ maxSize: config.api.batchBodyLimitBytes }));

  app.openapi(placeOrder, async (c) => {
    const order = c.req.valid('json');
    await shedIfOverloaded();
    return idempotent(c, order, async (seed) => {
      const orderId = seed ? derivedId(seed) : randomUUID();
      const correlationId = c.get('correlationId');
      const job = toJob(orderId, order, correlationId, new Date().toISOString());
      try {
        await enqueue(job);
      } catch {
        // 503: the job may or may not be in Redis (a bulk that failed or timed out after some writes).
        // A retry with the same Idempotency-Key maps to the same job id; one without may enqueue twice.
        throw new DependencyUnavailableError('redis');
      }
      requestLogAt(c, 'info')?.info({ orderId, jobId: orderId }, 'order accepted');
      return {
        status: 202,
        body: { orderId, status: 'queued', correlationId },
        headers: { location: `/v1/orders/${orderId}` },
      };
    }) as never;
  });

  app.openapi(placeBatch, async (c) => {
    const { orders } = c.req.valid('json');
    if (orders.length > config.api.batchMaxOrders) {
      throw new ValidationError(`at most ${config.api.batchMaxOrders} orders per batch`, [
        { path: 'orders', message: `at most ${config.api.batchMaxOrders} items` },
      ]);
    }
    await shedIfOverloaded();
    return idempotent(c, orders, async (seed) => {
      const correlationId = c.get('correlationId');
      const acceptedAt = new Date().toISOString();
      const results: ({ orderId: string; status: 'queued' } | { error: Problem })[] = [];
      const jobs: OrderJob[] = [];
      orders.forEach((raw, index) => {
        const parsed = PlaceOrderSchema.safeParse(raw);
        if (!parsed.success) {
          results.push({
            error: problem(400, 'request.invalid', `orders[${index}] is invalid`, {
              errors: fieldErrors(parsed.error.issues, `orders.${index}.`),
            }),
          });
          return;
        }
        const orderId = seed ? derivedId(seed, String(index)) : randomUUID();
        jobs.push(toJob(orderId, parsed.data, correlationId, acceptedAt));
        results.push({ orderId, status: 'queued' });
      });
      // One addBulk; if Redis fails part-way, each item is answered by whether its job is stored.
      const { accepted, error } =
        jobs.length > 0
          ? await addBulkExactly(ordersQueue, deps.orderJobOptions, jobs, timeoutMs)
          : { accepted: new Set<string>(), error: undefined };
      if (jobs.length > 0 && accepted.size === 0) throw new DependencyUnavailableError('redis');
      const answers = results.map((r) =>
        'orderId' in r && !accepted.has(r.orderId)
          ? {
              error: problem(
                503,
                'dependency.unavailable',
                'redis is unavailable; this order was not accepted, retry it',
              ),
            }
          : r,
      );
      const notAccepted = jobs.length - accepted.size;
      if (notAccepted > 0) {
        requestLog(c).warn(
          { err: error, accepted: accepted.size, notAccepted },
          'order batch partly enqueued',
        );
      }
      requestLogAt(c, 'info')?.info(
        { accepted: accepted.size, rejected: orders.length - accepted.size },
        'order batch accepted',
      );
      // A partial answer is not remembered under the Idempotency-Key: a retry with the key runs again,
      // and the derived order ids make the stored jobs dedupe while the missing ones are added.
      return { status: 202, body: { orders: answers }, headers: {}, remember: notAccepted === 0 };
    }) as never;
  });

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
          attempts: job.attemptsMade,
          lastError: job.failedReason ?? null,
          correlationId: parsed.data.correlationId,
          acceptedAt: parsed.data.acceptedAt,
          completedAt: null,
          updatedAt: null,
        };
        return view;
      }),
    );
    return found.filter((v): v is OrderView => v !== null);
  }

  /**
   * Orders by id, wherever they are: the read model; else the write model (decided, not yet
   * projected — its job may already be trimmed from Redis); else the queue (waiting or in progress).
   * Only an id none of them knows is missing: an accepted order never reads as 404.
   */
  async function lookUp(ids: readonly string[]): Promise<Map<string, OrderView>> {
    const found = new Map<string, OrderView>();
    const add = (views: readonly OrderView[]) => views.forEach((v) => found.set(v.orderId, v));
    const misses = () => ids.filter((id) => !found.has(id));
    add(await findOrders(deps.pool, ids));
    if (misses().length > 0) add(await findDecidedOrders(deps.pool, misses()));
    if (misses().length > 0) add(await fromQueue(misses()));
    return found;
  }

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
    const bad = ids.filter((id) => !uuidRe.test(id));
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
    const [page, totals] = await Promise.all([
      customerOrders(deps.pool, customerId, limit, decoded),
      customerTotals(deps.pool, customerId),
    ]);
    return c.json({ customerId, totals, ...page }, 200);
  });

  app.openapi(getStats, async (c) => {
    const { days } = c.req.valid('query');
    const s = await stats(deps.pool, days);
    return c.json({ orderCount: s.totals.reduce((n, t) => n + t.completedCount, 0), ...s }, 200);
  });

  return app;
}
