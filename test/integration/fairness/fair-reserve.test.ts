import { randomUUID } from 'node:crypto';
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { afterAll, describe, expect, it } from 'vitest';
import type { OrderJob } from '../../../modules/orders/domain.ts';
import { createOrdersQueue, PLACE_ORDER_JOB } from '../../../modules/orders/queue.ts';
import { createPaymentGateway } from '../../../modules/orders/worker/payment.ts';
import { loadConfig } from '../../../shared/config/config.ts';
import { createFairQueue, type FairQueue } from '../../../shared/fairness/fair-queue.ts';
import type { Tenant } from '../../../shared/fairness/tenants.ts';
import { commandJobOptions } from '../../../shared/queue/command-queue.ts';
import {
  eventually,
  isolatedEnv,
  migratedPool,
  testLogger,
  TEST_REDIS_URL,
  uniqueId,
} from '../../support/env.ts';
import { createOrderWorker } from '../../support/order-worker.ts';
import { cleanup } from '../../support/platform.ts';
import { MODULES } from '../../../modules/registry.ts';

// Issue #21's noisy neighbour at the slot level, on real Redis (and PostgreSQL): a flood that holds
// every slot of the workers must not make a quiet tenant's order wait for one of them to free up.
// The share cap: workers register their slots with the fair queue, tenants with a backlog share all
// but the reserve, and an order of a tenant without one is taken by a reserved slot at once.

const HOLD_MS = 7 * 86_400_000;
const tenant = (id: string): Tenant => ({
  id,
  policy: { weight: 1, maxInFlight: 0, backlogQuota: 0, subTenants: false },
});

const redis = new Redis(TEST_REDIS_URL, { maxRetriesPerRequest: null });
afterAll(async () => {
  await redis.quit();
});

describe('the share cap (Lua)', () => {
  const opened: Queue[] = [];
  afterAll(async () => {
    for (const q of opened) await q.obliterate({ force: true }).catch(() => undefined);
    for (const q of opened) await q.close();
  });

  async function post(fair: FairQueue, queue: Queue, t: Tenant, ids: string[]) {
    const admitted = await fair.admit(
      redis,
      ids.map((id) => ({ id, tenant: t })),
    );
    await queue.addBulk(
      ids.map((id, i) => ({
        name: 'cmd',
        data: { tenant: t.id },
        opts: { jobId: id, ...(admitted[i] === 'held' ? { delay: HOLD_MS } : {}) },
      })),
    );
    return admitted;
  }
  const worker = { id: 'w-1', slots: 12, reserve: 2, ttlMs: 10_000 };

  it('keeps backlogged tenants to the slots minus the reserve, and lets a quiet tenant past it', async () => {
    const queue = new Queue('orders', { connection: redis, prefix: uniqueId('cap') });
    opened.push(queue);
    const fair = createFairQueue('orders', queue.toKey(''), { depth: 50, holdMs: HOLD_MS });
    const wait = queue.toKey('wait');
    // Registered before the flood: its bulk goes straight in only up to the cap (10), the rest held.
    await fair.dispatch(redis, [], { worker });
    const flood = await post(
      fair,
      queue,
      tenant('flood'),
      Array.from({ length: 100 }, (_, i) => `f-${i}`),
    );
    expect(flood.filter((a) => a === 'direct')).toHaveLength(10);
    // Every slot a worker could give the flood is taken (wait list + active): nothing more of it.
    expect((await fair.dispatch(redis, [], { worker })).promoted).toBe(0);
    expect(await redis.llen(wait)).toBe(10);
    // A quiet tenant's order goes straight in past the cap (one per bulk: a reserved slot takes it).
    expect(await post(fair, queue, tenant('quiet'), ['q-0', 'q-1'])).toEqual(['direct', 'held']);
    // Its next one, held, is a backlog like the flood's: it waits for room like the flood's.
    expect((await fair.dispatch(redis, [], { worker })).promoted).toBe(0);
    // A worker takes 8 (active: still counted) — still no room; 4 of them finish: room for 3, in turn.
    const active = queue.toKey('active');
    for (let i = 0; i < 8; i++) await redis.lmove(wait, active, 'RIGHT', 'LEFT');
    expect((await fair.dispatch(redis, [], { worker })).promoted).toBe(0);
    for (let i = 0; i < 4; i++) await redis.rpop(active);
    expect((await fair.dispatch(redis, [], { worker })).promoted).toBe(3);
    expect(await redis.lrange(wait, 0, -1)).toContain('q-1');
    // The worker leaves (slots 0): no worker registered, no cap; the depth alone bounds the list.
    expect((await fair.dispatch(redis, [], { worker: { ...worker, slots: 0 } })).promoted).toBe(44);
    expect(await redis.llen(wait)).toBe(50);
  });

  it("a quiet tenant's first held order (a full wait list) is promoted to the front past the cap", async () => {
    const queue = new Queue('orders', { connection: redis, prefix: uniqueId('cap') });
    opened.push(queue);
    const fair = createFairQueue('orders', queue.toKey(''), { depth: 5, holdMs: HOLD_MS });
    const wait = queue.toKey('wait');
    await fair.dispatch(redis, [], { worker });
    await post(
      fair,
      queue,
      tenant('flood'),
      Array.from({ length: 30 }, (_, i) => `f-${i}`),
    );
    expect(await redis.llen(wait)).toBe(5);
    // The list is at its depth: the quiet order is held, and its turn is the next call's first.
    expect(await post(fair, queue, tenant('quiet'), ['q-0'])).toEqual(['held']);
    expect((await fair.dispatch(redis, [], { worker })).promoted).toBe(1);
    expect(await redis.lindex(wait, -1)).toBe('q-0');
  });

  it('promotes for jobs about to complete (finishing) without waking idle workers', async () => {
    const queue = new Queue('orders', { connection: redis, prefix: uniqueId('cap') });
    opened.push(queue);
    const fair = createFairQueue('orders', queue.toKey(''), { depth: 50, holdMs: HOLD_MS });
    const wait = queue.toKey('wait');
    const marker = queue.toKey('marker');
    await fair.dispatch(redis, [], { worker });
    await post(
      fair,
      queue,
      tenant('flood'),
      Array.from({ length: 40 }, (_, i) => `f-${i}`),
    );
    // All ten taken by a worker: the cap is reached.
    for (let i = 0; i < 10; i++) await redis.lmove(wait, queue.toKey('active'), 'RIGHT', 'LEFT');
    await redis.del(marker);
    expect((await fair.dispatch(redis, [], { worker })).promoted).toBe(0);
    // Six of them committed and are about to complete: six promoted for them, no worker woken.
    expect((await fair.dispatch(redis, [], { worker, finishing: 6 })).promoted).toBe(6);
    expect(await redis.llen(wait)).toBe(6);
    expect(await redis.zcard(marker)).toBe(0);
    // Nor does a call that promotes nothing; should they not take them (the worker closing), the
    // periodic call wakes a worker for them.
    expect((await fair.dispatch(redis, [], { worker })).promoted).toBe(0);
    expect(await redis.zcard(marker)).toBe(0);
    expect((await fair.dispatch(redis, [], { worker, sweep: true })).promoted).toBe(0);
    expect(await redis.zscore(marker, '0')).toBe('0');
  });

  it('forgets a worker that stopped calling (killed) after its ttl: no cap from it', async () => {
    const queue = new Queue('orders', { connection: redis, prefix: uniqueId('cap') });
    opened.push(queue);
    const fair = createFairQueue('orders', queue.toKey(''), { depth: 20, holdMs: HOLD_MS });
    await fair.dispatch(redis, [], { worker: { ...worker, ttlMs: 1 } });
    await eventually(
      async () => {
        await fair.dispatch(redis, []);
        return (await redis.hlen(queue.toKey('fair:workers'))) === 0;
      },
      { what: 'the killed worker forgotten' },
    );
    const admitted = await post(
      fair,
      queue,
      tenant('flood'),
      Array.from({ length: 30 }, (_, i) => `f-${i}`),
    );
    expect(admitted.filter((a) => a === 'direct')).toHaveLength(20);
  });
});

describe('a flood holding every slot (the real command worker)', () => {
  it("a quiet tenant's orders are taken at once, not when the flood's slots free up", async () => {
    // Ten slots; the flood's payment calls take 400 ms each, so its jobs hold the slots in waves.
    const config = loadConfig(isolatedEnv({ ORDERS_CONCURRENCY: '10', ORDERS_BATCH_SIZE: '10' }), {
      modules: MODULES,
    });
    const pool = await migratedPool(config);
    const queue = createOrdersQueue(redis, config.redis.queuePrefix);
    const { depth, holdMs, dispatchIntervalMs } = config.fairness;
    const fair = createFairQueue('orders', queue.toKey(''), { depth, holdMs });
    const payments = createPaymentGateway(
      {
        logger: testLogger(),
        client: {
          authorize: (r) =>
            new Promise((resolve) =>
              setTimeout(() => resolve({ approved: true }), r.customerId.startsWith('flood') ? 400 : 0),
            ),
        },
      },
      {
        timeout: 5_000,
        errorThresholdPercentage: 50,
        resetTimeout: 30_000,
        volumeThreshold: 10,
        rollingWindowMs: 10_000,
      },
    );
    const worker = createOrderWorker(
      { pool, logger: testLogger(), payments },
      {
        redisUrl: config.redis.url,
        queuePrefix: config.redis.queuePrefix,
        ...config.workers.orders,
        shutdownGraceMs: 5_000,
        fairness: { depth, holdMs, dispatchIntervalMs, reserve: 2 },
      },
    );
    const order = (t: string, i: number): OrderJob => {
      const orderId = randomUUID();
      return {
        orderId,
        correlationId: `reserve-${orderId}`,
        acceptedAt: new Date().toISOString(),
        acceptedBy: t,
        tenant: t,
        order: {
          customerId: `${t}:c${i}`,
          currency: 'EUR',
          items: [{ sku: 'sku-1', quantity: 1, unitPriceCents: 100 }],
        },
      };
    };
    const post = async (t: Tenant, jobs: OrderJob[]) => {
      const admitted = await fair.admit(
        redis,
        jobs.map((j) => ({ id: j.orderId, tenant: t })),
      );
      await queue.addBulk(
        jobs.map((data, k) => ({
          name: PLACE_ORDER_JOB,
          data,
          opts: {
            ...commandJobOptions(config.workers.orders),
            jobId: data.orderId,
            ...(admitted[k] === 'held' ? { delay: holdMs } : {}),
          },
        })),
      );
    };
    try {
      const flood = Array.from({ length: 150 }, (_, i) => order('flood', i));
      // The worker registers its slots at its first call, before the flood arrives (as in production,
      // where workers run before producers post).
      await eventually(async () => (await redis.hlen(queue.toKey('fair:workers'))) === 1, {
        what: 'the worker registered',
      });
      await post(tenant('flood'), flood);
      await eventually(async () => (await queue.getCompletedCount()) >= 20, {
        what: 'the flood under way',
        timeoutMs: 20_000,
      });
      // Six single orders, spaced so they land at different points of the flood's 400 ms waves.
      const quiet: OrderJob[] = [];
      for (let i = 0; i < 6; i++) {
        const job = order('quiet', i);
        quiet.push(job);
        await post(tenant('quiet'), [job]);
        await new Promise((r) => setTimeout(r, 130));
      }
      await eventually(
        async () =>
          (await Promise.all(quiet.map((j) => queue.getJobState(j.orderId)))).every((s) => s === 'completed'),
        { what: "the quiet tenant's orders completed", timeoutMs: 20_000 },
      );
      const jobs = await Promise.all(quiet.map((j) => queue.getJob(j.orderId)));
      // From added to taken by a worker: a reserved slot takes it at once. Without the reserve, a
      // slot frees only when a wave of the flood ends (up to 400 ms, 200 on average).
      const waits = jobs.map((j) => j!.processedOn! - j!.timestamp);
      expect(waits.map((w) => (w < 150 ? 'at once' : w))).toEqual(waits.map(() => 'at once'));
      // The flood still completes, every order exactly once.
      const ids = [...flood, ...quiet].map((j) => j.orderId);
      await eventually(
        async () => {
          const { rows } = await pool.query<{ n: number }>(
            'SELECT count(*)::int AS n FROM orders WHERE order_id = ANY($1::uuid[])',
            [ids],
          );
          return rows[0]!.n === ids.length;
        },
        { what: 'all orders decided', timeoutMs: 30_000 },
      );
      const { rows } = await pool.query<{ events: number; orders: number }>(
        `SELECT count(*)::int AS events, count(DISTINCT aggregate_id)::int AS orders
           FROM outbox WHERE aggregate_id = ANY($1::text[])`,
        [ids],
      );
      expect(rows[0]).toEqual({ events: ids.length, orders: ids.length });
    } finally {
      await worker.close();
      // The closing worker took its slots away.
      expect(await redis.hlen(queue.toKey('fair:workers'))).toBe(0);
      await queue.obliterate({ force: true }).catch(() => undefined);
      await queue.close();
      await pool.end();
      await cleanup(config);
    }
  });
});
