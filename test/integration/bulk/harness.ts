import { OpenAPIHono } from '@hono/zod-openapi';
import { Queue } from 'bullmq';
import type { ApiDeps, ApiEnv } from '../../../shared/http/context.ts';
import { onError, notFound } from '../../../shared/http/errors.ts';
import { bulkRoutes } from '../../../api/routes/bulk.ts';
import { createPgDeadLetterSink, type NewDeadLetter } from '../../../shared/dead-letters/dead-letter.ts';
import type { Pool } from '../../../shared/db/pool.ts';
import type { Config } from '../../../shared/config/config.ts';
import type { Redis } from '../../../shared/queue/redis.ts';
import { queueOptions } from '../../../shared/queue/names.ts';

/**
 * The bulk-action routes on an app of their own (the principal set as auth would), so their tests do not
 * depend on where api/app.ts registers them; every dependency real (PostgreSQL, Redis).
 */
export function bulkApp(deps: { pool: Pool; redis: Redis; config: Config }, principal = 'ops') {
  const app = new OpenAPIHono<ApiEnv>();
  app.onError(onError);
  app.notFound(notFound);
  app.use('*', async (c, next) => {
    c.set('correlationId', 'test');
    c.set('principal', principal);
    await next();
  });
  // No command queues of the API's own: the search opens its own on `redis`.
  app.route('/', bulkRoutes({ ...deps, commandQueues: new Map() } as unknown as ApiDeps));
  return async <T = Record<string, unknown>>(method: string, path: string, body?: unknown) => {
    const res = await app.request(path, {
      method,
      headers: { 'content-type': 'application/json' },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
    return { status: res.status, headers: res.headers, body: (await res.json()) as T };
  };
}

/** `n` order-command dead letters as the order worker records them, failing one second apart from `t0`. */
export async function seedOrderDeadLetters(
  pool: Pool,
  n: number,
  options: { tag: string; t0?: number; subject?: string } = { tag: 'dl' },
): Promise<NewDeadLetter[]> {
  const sink = createPgDeadLetterSink(pool);
  const t0 = options.t0 ?? Date.UTC(2026, 0, 1);
  const out: NewDeadLetter[] = [];
  for (let i = 0; i < n; i++) {
    const orderId = `00000000-0000-4000-8000-${options.tag.padStart(4, '0').slice(-4)}${String(i).padStart(8, '0')}`;
    const payload = {
      orderId,
      correlationId: `corr-${options.tag}-${i}`,
      acceptedAt: new Date(t0).toISOString(),
      order: {
        customerId: 'c-bulk',
        currency: 'EUR',
        items: [{ sku: 's', quantity: 1, unitPriceCents: 100 }],
      },
    };
    const dl: NewDeadLetter = {
      id: `bullmq-orders-${orderId}`,
      transport: 'bullmq',
      origin: 'orders',
      kind: 'command',
      messageKey: orderId,
      payload: Buffer.from(JSON.stringify(payload)),
      headers: { 'job-name': 'place-order' },
      error: 'ledger offline',
      stack: null,
      attempts: 5,
      correlationId: payload.correlationId,
      subjectId: options.subject ?? orderId,
      firstFailedAt: null,
      failedAt: new Date(t0 + i * 1_000),
    };
    await sink.record(dl);
    out.push(dl);
  }
  return out;
}

/** Jobs in the orders command queue (any state). */
export async function ordersJobCount(redis: Redis, prefix: string): Promise<number> {
  const q = new Queue('orders', queueOptions(redis, prefix, 'orders'));
  try {
    const counts = await q.getJobCounts('waiting', 'delayed', 'active', 'prioritized', 'completed', 'failed');
    return Object.values(counts).reduce((a, b) => a + b, 0);
  } finally {
    await q.close();
  }
}
