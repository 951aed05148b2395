import { randomUUID } from 'node:crypto';
import { createRoute, z } from '@hono/zod-openapi';
import {
  createIdempotent,
  derivedId,
  IdempotencyKeyParameter,
  idempotencyResponses,
} from '../../../shared/http/idempotent.ts';
import { loadShedding } from '../../../shared/http/load-shedding.ts';
import { addBulkExactly } from '../../../shared/http/enqueue.ts';
import { requestLogAt } from '../../../shared/http/log.ts';
import { bodyLimit } from '../../../shared/http/body-limit.ts';
import type { ModuleApiContext, ResourceExtension } from '../../../shared/http/modules.ts';
import { ProblemSchema, problemResponses } from '../../../shared/http/schemas.ts';
import type { Pool } from '../../../shared/db/pool.ts';
import { DependencyUnavailableError, StateConflictError } from '../../../shared/errors/domain.ts';
import { attemptsMadeOf, lastErrorOf } from '../../../shared/queue/job-delivery.ts';
import { OrderNotFoundError } from '../../orders/errors.ts';
import { registerCommandResource } from '../../../shared/http/command-resources.ts';
import { settleCancels } from '../../../shared/commands/cancel.ts';
import type { CommandView, ModuleApiFactory } from '../../../shared/modules/module.ts';
import { RefundJobSchema, RefundNotFoundError, RequestRefundSchema, type RefundJob } from '../domain.ts';
import {
  findDecidedRefunds,
  findRefunds,
  refundsOfOrders,
  refundTotals,
  type RefundView,
} from './read-models.sql.ts';

const problem = (description: string) => ({
  description,
  content: { 'application/problem+json': { schema: ProblemSchema } },
});

const RefundBody = z.strictObject(RequestRefundSchema.shape).openapi('RequestRefund', {
  example: { amountCents: 1250, reason: 'damaged on delivery' },
});
const OrderParam = z.object({ orderId: z.uuid().openapi({ param: { name: 'orderId', in: 'path' } }) });
const RefundParam = z.object({ refundId: z.uuid().openapi({ param: { name: 'refundId', in: 'path' } }) });
const AcceptedRefund = z
  .object({ refundId: z.uuid(), orderId: z.uuid(), status: z.literal('queued'), correlationId: z.string() })
  .openapi('AcceptedRefund');
const RefundViewSchema = z
  .object({
    refundId: z.uuid(),
    orderId: z.uuid().nullable(),
    customerId: z.string().nullable(),
    currency: z.string().nullable(),
    amountCents: z.number().int().nullable(),
    reason: z.string().nullable(),
    status: z.enum(['queued', 'processing', 'completed', 'rejected', 'dead_lettered', 'cancelled']),
    code: z
      .string()
      .nullable()
      .describe(
        'Why a refund was rejected: refund.order_not_completed, refund.currency_mismatch, refund.exceeds_order_total',
      ),
    detail: z.string().nullable(),
    attempts: z.number().int(),
    correlationId: z.string().nullable(),
    requestedAt: z.string().nullable(),
    decidedAt: z.string().nullable(),
    updatedAt: z.string().nullable().describe('Null until the read model has it'),
  })
  .openapi('Refund');

const requestRefund = createRoute({
  method: 'post',
  path: '/v1/orders/{orderId}/refunds',
  tags: ['refunds'],
  summary: 'Refund part or all of a completed order (enqueued; decided asynchronously)',
  parameters: [IdempotencyKeyParameter],
  request: {
    params: OrderParam,
    body: { required: true, content: { 'application/json': { schema: RefundBody } } },
  },
  responses: {
    202: {
      description: 'Accepted and enqueued',
      headers: { Location: { schema: { type: 'string' } } },
      content: { 'application/json': { schema: AcceptedRefund } },
    },
    404: problem('Unknown order'),
    413: problem('Body over the limit'),
    ...problemResponses,
    ...idempotencyResponses,
    409: problem(
      'The order is not completed (yet), code order.not_refundable; or a request with this Idempotency-Key is in flight',
    ),
  },
});

const getRefund = createRoute({
  method: 'get',
  path: '/v1/refunds/{refundId}',
  tags: ['refunds'],
  summary: 'One refund: read model, else write model, else queue (never 404 once accepted)',
  request: { params: RefundParam },
  responses: {
    200: { description: 'The refund', content: { 'application/json': { schema: RefundViewSchema } } },
    404: problem('Unknown refund'),
    ...problemResponses,
  },
});

const listRefunds = createRoute({
  method: 'get',
  path: '/v1/orders/{orderId}/refunds',
  tags: ['refunds'],
  summary: "An order's refunds from the read model, oldest first",
  request: { params: OrderParam },
  responses: {
    200: {
      description: 'The refunds',
      content: {
        'application/json': { schema: z.object({ orderId: z.uuid(), refunds: z.array(RefundViewSchema) }) },
      },
    },
    ...problemResponses,
  },
});

function routes(ctx: ModuleApiContext): void {
  const { app, deps, commands, redisCall, timeoutMs } = ctx;
  const { pool } = deps;
  const idempotent = createIdempotent({ store: deps.idempotency, redisCall });
  const shedIfOverloaded = loadShedding(commands.queue, {
    maxBacklog: deps.config.api.maxBacklog,
    redisCall,
  });
  const orders = ctx.commandQueues.get('orders');

  /**
   * A cheap early answer for the producer: the refunds worker decides for good (with the order's row
   * locked), this only refuses what cannot be refunded now — an order nobody knows (404), or one not
   * completed (409; while it is still queued, retrying later may succeed).
   */
  async function checkRefundable(orderId: string): Promise<void> {
    const { rows } = await pool.query<{ status: string }>('SELECT status FROM orders WHERE order_id = $1', [
      orderId,
    ]);
    const status = rows[0]?.status;
    if (status === 'completed') return;
    if (status)
      throw new StateConflictError(
        'order.not_refundable',
        `order ${orderId} is ${status}: only a completed order can be refunded`,
      );
    const job = orders ? await redisCall(() => orders.queue.getJob(orderId)) : undefined;
    if (!job) throw new OrderNotFoundError(orderId);
    throw new StateConflictError(
      'order.not_refundable',
      `order ${orderId} is not decided yet: retry once it is completed`,
    );
  }

  app.use('/v1/orders/:orderId/refunds', bodyLimit({ maxSize: deps.config.api.bodyLimitBytes }));

  app.openapi(requestRefund, async (c) => {
    const { orderId } = c.req.valid('param');
    const refund = c.req.valid('json');
    await shedIfOverloaded();
    return idempotent(c, refund, async (seed) => {
      await checkRefundable(orderId);
      const refundId = seed ? derivedId(seed) : randomUUID();
      const correlationId = c.get('correlationId');
      const tenant = c.get('tenant');
      const job: RefundJob = {
        refundId,
        orderId,
        correlationId,
        requestedAt: new Date().toISOString(),
        tenant: tenant.id,
        refund,
      };
      const { accepted, refused } = await addBulkExactly(
        commands,
        [{ id: refundId, data: job, tenant }],
        timeoutMs,
      );
      // Refused on purpose (the tenant's backlog quota: 429 with Retry-After), else Redis failed (503).
      const refusal = refused?.get(refundId);
      if (refusal) throw refusal;
      if (!accepted.has(refundId)) throw new DependencyUnavailableError('redis');
      requestLogAt(c, 'info')?.info({ orderId, refundId, jobId: refundId }, 'refund accepted');
      return {
        status: 202,
        body: { refundId, orderId, status: 'queued', correlationId },
        headers: { location: `/v1/refunds/${refundId}` },
      };
    }) as never;
  });

  /** A refund not decided yet, from its job. */
  async function fromQueue(refundId: string): Promise<RefundView | undefined> {
    const job = await redisCall(() => commands.queue.getJob(refundId));
    if (!job) return undefined;
    const state = await redisCall(() => job.getState());
    const parsed = RefundJobSchema.safeParse(job.data);
    if (!parsed.success) return undefined;
    const { refund, orderId, correlationId, requestedAt } = parsed.data;
    return {
      refundId,
      orderId,
      customerId: null,
      currency: refund.currency ?? null,
      amountCents: refund.amountCents,
      reason: refund.reason ?? null,
      status: ['waiting', 'delayed', 'prioritized', 'waiting-children'].includes(state)
        ? 'queued'
        : 'processing',
      code: null,
      detail: lastErrorOf(job),
      attempts: attemptsMadeOf(job), // ours: BullMQ's `attemptsMade` does not count our retries
      correlationId,
      requestedAt,
      decidedAt: null,
      updatedAt: null,
    };
  }

  /** The primary's read model, then its write model (decided, not yet projected). */
  async function fromPrimary(primary: Pool, ids: readonly string[]): Promise<RefundView[]> {
    const projected = await findRefunds(primary, ids);
    return projected.length > 0 ? projected : findDecidedRefunds(primary, ids);
  }

  /**
   * A refund by id: the read model on the replica (if any), then on the primary, then the write model,
   * then the queue, then the primary once more — replica lag never turns an accepted refund into a 404,
   * nor does its job leaving Redis (removeOnComplete) between the write-model read and the queue read:
   * a job is removed only after its decision committed, so the last read finds that decision.
   */
  async function lookUp(refundId: string): Promise<RefundView | undefined> {
    const groups = await deps.reads.byIds(
      [refundId],
      (r: RefundView) => r.refundId,
      findRefunds,
      fromPrimary,
    );
    const found = groups.flatMap((g) => g.rows)[0] ?? (await fromQueue(refundId));
    if (found) return found;
    // A cancel removes its job just before it commits: its row is read once it ended (shared/commands/cancel.ts).
    await settleCancels(pool, commands.module.name, [refundId]);
    return (await fromPrimary(pool, [refundId]))[0];
  }

  // `Prefer: wait` on the refund POST and this GET, and GET /v1/refunds/{refundId}/events (api/results).
  registerCommandResource(app, {
    module: commands.module.name,
    path: '/v1/refunds/:refundId',
    read: async (id) => {
      if (!z.uuid().safeParse(id).success) return undefined;
      const refund = await lookUp(id);
      return refund && refundCommandView(refund);
    },
  });

  app.openapi(getRefund, async (c) => {
    const { refundId } = c.req.valid('param');
    const found = await lookUp(refundId);
    if (!found) throw new RefundNotFoundError(refundId);
    return c.json(found, 200);
  });

  app.openapi(listRefunds, async (c) => {
    const { orderId } = c.req.valid('param');
    const byOrder = await deps.reads.read((p) => refundsOfOrders(p, [orderId]));
    const refunds = byOrder.get(orderId) ?? [];
    return c.json({ orderId, refunds }, 200);
  });
}

const FINAL_REFUND_STATUSES: ReadonlySet<string> = new Set([
  'completed',
  'rejected',
  'dead_lettered',
  'cancelled',
]);

/** A refund as the core's results see it: its GET body; projected once `updatedAt` is set. */
function refundCommandView(refund: RefundView): CommandView {
  const final = FINAL_REFUND_STATUSES.has(refund.status);
  return {
    body: refund as unknown as Record<string, unknown>,
    status: refund.status,
    final,
    attempts: refund.attempts,
    // Until decided, `detail` is the last failure (after, the decision's reason).
    lastError: final ? null : refund.detail,
    projected: refund.updatedAt !== null,
  };
}

const refundSummary = z.object({
  refundId: z.uuid(),
  amountCents: z.number().int().nullable(),
  status: z.string(),
  code: z.string().nullable(),
  decidedAt: z.string().nullable(),
});

/** What refunds add to the orders module's resources (read from the refunds read models at query time). */
const extensions: Record<string, ResourceExtension<never>> = {
  order: {
    shape: {
      refundedCents: z.number().int().describe('Completed refunds, from the refunds read model'),
      refunds: z.array(refundSummary),
    },
    load: async (pool, rows: readonly { orderId: string }[]) => {
      const byOrder = await refundsOfOrders(
        pool,
        rows.map((r) => r.orderId),
      );
      return rows.map((r) => {
        const refunds = byOrder.get(r.orderId) ?? [];
        return {
          refundedCents: refunds.reduce(
            (sum, x) => sum + (x.status === 'completed' ? (x.amountCents ?? 0) : 0),
            0,
          ),
          refunds: refunds.map(({ refundId, amountCents, status, code, decidedAt }) => ({
            refundId,
            amountCents,
            status,
            code,
            decidedAt,
          })),
        };
      });
    },
  },
  ...Object.fromEntries(
    (['customer-totals', 'stats-totals', 'stats-daily'] as const).map((resource) => [
      resource,
      {
        shape: {
          refundedCents: z.number().int(),
          netRevenueCents: z.number().int().describe('revenueCents minus refundedCents'),
        },
        load: async (
          pool: Parameters<ResourceExtension['load']>[0],
          rows: readonly { currency: string; revenueCents: number; day?: string }[],
          scope: Readonly<Record<string, string>>,
        ) => {
          const dimension = resource === 'customer-totals' ? 'customer' : 'day';
          const key = (r: { day?: string }) =>
            resource === 'customer-totals' ? scope.customerId! : resource === 'stats-daily' ? r.day! : '';
          const keys = resource === 'stats-totals' ? null : [...new Set(rows.map(key))];
          const totals = await refundTotals(pool, dimension, keys);
          return rows.map((r) => {
            const refunded = totals.get(`${key(r)}|${r.currency}`)?.refundedCents ?? 0;
            return { refundedCents: refunded, netRevenueCents: r.revenueCents - refunded };
          });
        },
      } satisfies ResourceExtension<never> as ResourceExtension<never>,
    ]),
  ),
};

/** The refunds module's HTTP side: its command and queries, and what it adds to orders. */
export const refundsApi: ModuleApiFactory = { routes, extensions };
