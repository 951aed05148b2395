import { randomUUID } from 'node:crypto';
import { createRoute, z } from '@hono/zod-openapi';
import { PlaceOrderSchema, type OrderJob, type PlaceOrder } from '../domain.ts';
import {
  DependencyUnavailableError,
  TenantQuotaExceededError,
  ValidationError,
} from '../../../shared/errors/domain.ts';
import { fieldErrors, problem, toProblem, type Problem } from '../../../shared/errors/problem.ts';
import type { ModuleApiContext } from '../../../shared/http/modules.ts';
import {
  createIdempotent,
  derivedId,
  IdempotencyKeyParameter,
  idempotencyResponses,
} from '../../../shared/http/idempotent.ts';
import { loadShedding } from '../../../shared/http/load-shedding.ts';
import { addBulkExactly, coalescingEnqueue, type NewJob } from '../../../shared/http/enqueue.ts';
import { requestLog, requestLogAt } from '../../../shared/http/log.ts';
import { bodyLimit } from '../../../shared/http/body-limit.ts';
import { createBatchOpener } from '../../../shared/http/batches.ts';
import { ProblemSchema, problemResponses } from '../../../shared/http/schemas.ts';
import { AcceptedOrderSchema, BatchBody, BatchResultSchema, PlaceOrderBody } from './schemas.ts';

/** Most single-order jobs coalesced into one `addBulk`. */
const MAX_COALESCED_JOBS = 256;

const bodyTooLarge = {
  description: 'Body over the limit',
  content: { 'application/problem+json': { schema: ProblemSchema } },
};

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
    ...idempotencyResponses,
    413: bodyTooLarge,
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
      description:
        'One result per input order, in order, and the batch id of those accepted (progress at `Location`)',
      headers: { Location: { schema: { type: 'string' } } },
      content: {
        'application/json': {
          schema: BatchResultSchema.extend({
            batchId: z.uuid().optional().openapi({
              description:
                'GET /v1/batches/{batchId}: its progress; `batch.completed` once every accepted order is decided. Absent only if it could not be recorded (retry with the same Idempotency-Key).',
            }),
          }),
        },
      },
    },
    ...problemResponses,
    ...idempotencyResponses,
    413: bodyTooLarge,
  },
});

/**
 * An order's job; `tenant` is who it is for (fairness: the key's id, or `<key id>/<sub-tenant>`);
 * `batchId` the batch it was posted in, if any.
 */
function toJob(
  orderId: string,
  order: PlaceOrder,
  correlationId: string,
  acceptedAt: string,
  acceptedBy: string,
  tenant: string,
  batchId?: string,
): OrderJob {
  return {
    orderId,
    correlationId,
    acceptedAt,
    acceptedBy,
    tenant,
    ...(batchId === undefined ? {} : { batchId }),
    order,
  };
}

/**
 * The orders module's commands on `app`: POST /v1/orders (single orders, their enqueues coalesced)
 * and POST /v1/orders/batch (one `addBulk`), each behind the body limit, load shedding and the
 * Idempotency-Key. Everything per app (the coalescing enqueue, the backlog cache) is made here, once.
 */
export function orderCommandRoutes(ctx: ModuleApiContext): void {
  const { app, deps, timeoutMs, redisCall, commands } = ctx;
  const { config } = deps;
  const shedIfOverloaded = loadShedding(commands.queue, { maxBacklog: config.api.maxBacklog, redisCall });
  const idempotent = createIdempotent({ store: deps.idempotency, redisCall });
  const batches = createBatchOpener(deps.pool, 'orders');
  // Concurrent POST /v1/orders share one Redis pipeline per event-loop turn.
  const enqueue = coalescingEnqueue(commands, {
    maxBatch: MAX_COALESCED_JOBS,
    maxWaitMs: 0,
    timeoutMs,
    maxInFlight: 1,
  });

  app.use('/v1/orders', bodyLimit({ maxSize: config.api.bodyLimitBytes }));
  app.use('/v1/orders/batch', bodyLimit({ maxSize: config.api.batchBodyLimitBytes }));

  app.openapi(placeOrder, async (c) => {
    const order = c.req.valid('json');
    await shedIfOverloaded();
    return idempotent(c, order, async (seed) => {
      const orderId = seed ? derivedId(seed) : randomUUID();
      const correlationId = c.get('correlationId');
      const tenant = c.get('tenant');
      const job = toJob(
        orderId,
        order,
        correlationId,
        new Date().toISOString(),
        c.get('principal'),
        tenant.id,
      );
      try {
        await enqueue({ id: orderId, data: job, tenant });
      } catch (err) {
        // The tenant's backlog quota is full: 429 with Retry-After, and nothing was enqueued.
        if (err instanceof TenantQuotaExceededError) throw err;
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
      const tenant = c.get('tenant');
      // Same Idempotency-Key, same batch (and the same order ids): a retry completes the same batch.
      const batchId = batches.idFor(seed);
      const results: ({ orderId: string; status: 'queued' } | { error: Problem })[] = [];
      const jobs: NewJob<OrderJob>[] = [];
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
        jobs.push({
          id: orderId,
          data: toJob(
            orderId,
            parsed.data,
            correlationId,
            acceptedAt,
            c.get('principal'),
            tenant.id,
            batchId,
          ),
          tenant,
        });
        results.push({ orderId, status: 'queued' });
      });
      // One addBulk; if Redis fails part-way, each item is answered by whether its job is stored. Items
      // refused on purpose (the tenant's backlog quota) are answered with their own problem (429).
      const {
        accepted,
        error,
        refused = new Map<string, Error>(),
      } = jobs.length > 0
        ? await addBulkExactly(commands.bulk ?? commands, jobs, timeoutMs)
        : { accepted: new Set<string>() };
      const failed = jobs.length - accepted.size - refused.size;
      if (jobs.length > 0 && accepted.size === 0) {
        // Nothing stored: the whole request is the 503 (Redis) or, when every job was refused, the 429.
        const refusal = refused.values().next().value;
        throw failed === 0 && refusal ? refusal : new DependencyUnavailableError('redis');
      }
      const answers = results.map((r) => {
        if (!('orderId' in r) || accepted.has(r.orderId)) return r;
        const refusal = refused.get(r.orderId);
        return refusal
          ? { error: toProblem(refusal) }
          : {
              error: problem(
                503,
                'dependency.unavailable',
                'redis is unavailable; this order was not accepted, retry it',
              ),
            };
      });
      const notAccepted = jobs.length - accepted.size;
      if (failed > 0) {
        requestLog(c).warn(
          { err: error, accepted: accepted.size, notAccepted: failed },
          'order batch partly enqueued',
        );
      }
      requestLogAt(c, 'info')?.info(
        { accepted: accepted.size, refused: refused.size, rejected: orders.length - accepted.size },
        'order batch accepted',
      );
      // The batch is what was accepted: its total is counted once the jobs are stored.
      const opened = await batches.open(c, batchId, accepted.size);
      // A partial answer is not remembered under the Idempotency-Key: a retry with the key runs again,
      // and the derived order ids make the stored jobs dedupe while the missing ones are added (and
      // the batch's total grows to them). Nor is one whose batch could not be recorded.
      return {
        status: 202,
        body: opened ? { orders: answers, batchId: opened.batchId } : { orders: answers },
        headers: opened ? opened.headers : {},
        remember: notAccepted === 0 && opened !== undefined,
      };
    }) as never;
  });
}
