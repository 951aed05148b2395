import { randomUUID } from 'node:crypto';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { coalescingEnqueue } from '../../shared/http/enqueue.ts';
import type { OrderJob } from '../../modules/orders/domain.ts';
import { createOrdersQueue, PLACE_ORDER_JOB, type OrdersQueue } from '../../modules/orders/queue.ts';
import { commandJobOptions } from '../../shared/queue/command-queue.ts';
import { createProducerRedis } from '../../shared/queue/redis.ts';
import { testConfig } from '../support/env.ts';
import { request } from '../support/http.ts';
import { startPlatform, type Platform } from '../support/platform.ts';
import { ownRedis, type OwnRedis } from '../support/redis-server.ts';

// addBulk is a pipeline, not a transaction: when Redis reaches `maxmemory` (noeviction) in the middle
// of one, the jobs before that point are stored and the rest refused. Every request must then be
// answered by what Redis really holds — a 202 exactly for the stored jobs, never a blanket 503 (a
// client retrying without an Idempotency-Key would create a second order).

/** An order of about 2 KB, so a bulk of a few hundred crosses a memory budget of a few hundred KB. */
const fatOrder = (customerId: string) => ({
  customerId,
  currency: 'EUR',
  items: Array.from({ length: 20 }, (_, i) => ({
    sku: `sku-${i}-${'x'.repeat(50)}`,
    quantity: 1,
    unitPriceCents: 100,
  })),
});

let redis: OwnRedis;
let admin: Redis;

/** Lets Redis take about `bytes` more before it refuses writes. */
async function allowOnly(bytes: number): Promise<void> {
  const used = Number(/used_memory:(\d+)/.exec(await admin.info('memory'))![1]);
  await admin.config('SET', 'maxmemory', String(used + bytes));
}

async function storedJobIds(queue: OrdersQueue): Promise<Set<string>> {
  const jobs = await queue.getJobs(['waiting', 'prioritized', 'delayed', 'active'], 0, -1);
  return new Set(jobs.map((j) => j.id!));
}

/**
 * Empties `queue`, so a case starts from nothing and one case's jobs never count in the next: with
 * fairness on, jobs beyond the wait list's depth (FAIRNESS_DEPTH) are added held, as delayed jobs, and
 * `drain()` alone keeps delayed jobs.
 */
async function emptyQueue(queue: OrdersQueue): Promise<void> {
  await queue.drain(true);
  expect(await storedJobIds(queue)).toEqual(new Set());
}

beforeAll(async () => {
  redis = await ownRedis();
  admin = new Redis(redis.url);
});
afterAll(async () => {
  admin?.disconnect();
  await redis?.stop();
});

describe('a Redis that fills up in the middle of an enqueue', () => {
  let platform: Platform;
  let queue: OrdersQueue;
  beforeAll(async () => {
    platform = await startPlatform(testConfig({ REDIS_URL: redis.url }), { workers: [] });
    queue = createOrdersQueue(platform.rt.redis, platform.config.redis.queuePrefix);
  });
  afterAll(async () => {
    await admin.config('SET', 'maxmemory', '0');
    await queue?.close();
    await platform?.close();
  });

  it('answers each batch item by whether its job was stored', async () => {
    // Warm up (BullMQ's scripts loaded, queue keys in place) before memory is measured.
    const warm = await request(`${platform.url}/v1/orders/batch`, {
      method: 'POST',
      json: { orders: [fatOrder('c-warm')] },
    });
    expect(warm.status).toBe(202);
    await emptyQueue(queue);
    await allowOnly(400_000);

    const res = await request<{
      orders: ({ orderId: string } | { error: { status: number; code: string } })[];
    }>(`${platform.url}/v1/orders/batch`, {
      method: 'POST',
      json: { orders: Array.from({ length: 600 }, (_, i) => fatOrder(`c-${i}`)) },
    });
    await admin.config('SET', 'maxmemory', '0');

    expect(res.status).toBe(202);
    const queued = res.body.orders.flatMap((r) => ('orderId' in r ? [r.orderId] : []));
    const refused = res.body.orders.filter((r) => 'error' in r);
    expect(queued.length).toBeGreaterThan(0);
    expect(refused.length).toBeGreaterThan(0);
    expect(queued.length + refused.length).toBe(600);
    for (const r of refused)
      expect(r).toMatchObject({ error: { status: 503, code: 'dependency.unavailable' } });
    expect(await storedJobIds(queue)).toEqual(new Set(queued));
  });

  it('answers each coalesced single enqueue by whether its job was stored', async () => {
    await emptyQueue(queue);
    const enqueue = coalescingEnqueue(
      {
        queue,
        jobName: PLACE_ORDER_JOB,
        jobOptions: commandJobOptions({ attempts: 1, backoffMs: 10, keepCompletedSeconds: 0 }),
      },
      {
        maxBatch: 256,
        maxWaitMs: 0,
        timeoutMs: 10_000,
        maxInFlight: 1,
      },
    );
    await allowOnly(300_000);
    const jobs: OrderJob[] = Array.from({ length: 500 }, (_, i) => ({
      orderId: randomUUID(),
      correlationId: `corr-${i}`,
      acceptedAt: new Date().toISOString(),
      order: fatOrder(`c-single-${i}`),
    }));
    const outcomes = await Promise.allSettled(jobs.map((job) => enqueue({ id: job.orderId, data: job })));
    await admin.config('SET', 'maxmemory', '0');

    const resolved = jobs.filter((_, i) => outcomes[i]!.status === 'fulfilled').map((j) => j.orderId);
    expect(resolved.length).toBeGreaterThan(0);
    expect(resolved.length).toBeLessThan(jobs.length);
    expect(await storedJobIds(queue)).toEqual(new Set(resolved));
  });

  it('answers a coalesced enqueue 202 when its job was stored, though its process was starved', async () => {
    // A loaded machine: the API's event loop blocked again and again while its bulk and the check
    // after it are in flight, longer than the per-command timeout. Redis answers at once, but the
    // command timers run before the replies are read: both the add and the check "time out".
    const starved = createProducerRedis({ url: redis.url, commandTimeoutMs: 100 }, 'starved-api');
    const starvedQueue = createOrdersQueue(starved, platform.config.redis.queuePrefix);
    await starvedQueue.waitUntilReady();
    await emptyQueue(queue);
    const enqueue = coalescingEnqueue(
      {
        queue: starvedQueue,
        jobName: PLACE_ORDER_JOB,
        jobOptions: commandJobOptions({ attempts: 1, backoffMs: 10, keepCompletedSeconds: 0 }),
      },
      { maxBatch: 256, maxWaitMs: 0, timeoutMs: 5_000, maxInFlight: 1 },
    );
    const jobs: OrderJob[] = Array.from({ length: 300 }, (_, i) => ({
      orderId: randomUUID(),
      correlationId: `corr-starved-${i}`,
      acceptedAt: new Date().toISOString(),
      order: fatOrder(`c-starved-${i}`),
    }));
    // For 1.5 s, every command sent on the API's connection is followed, in the same turn, by 250 ms
    // of busy JavaScript (the check phase): the next turn's timers phase, on a fresh clock, runs the
    // command's 100 ms timer before its poll phase reads what Redis answered meanwhile — as when a
    // process is descheduled in the middle of its JavaScript.
    const starveUntil = Date.now() + 1_500;
    let busyTurn = false;
    const send = starved.sendCommand.bind(starved);
    starved.sendCommand = (...args: Parameters<typeof send>) => {
      if (!busyTurn && Date.now() < starveUntil) {
        busyTurn = true;
        setImmediate(() => {
          const busyUntil = Date.now() + 250;
          while (Date.now() < busyUntil) {
            /* a starved process: no timer, no socket read */
          }
          busyTurn = false;
        });
      }
      return send(...args);
    };
    try {
      const outcomes = await Promise.allSettled(jobs.map((job) => enqueue({ id: job.orderId, data: job })));
      const resolved = jobs.filter((_, i) => outcomes[i]!.status === 'fulfilled').map((j) => j.orderId);
      // Every job was stored, so every caller hears so: no 503 for an accepted job.
      const stored = await storedJobIds(queue);
      expect({ stored: stored.size, resolved: resolved.length }).toEqual({ stored: 300, resolved: 300 });
      expect(stored).toEqual(new Set(resolved));
    } finally {
      await starvedQueue.close();
      starved.disconnect();
    }
  });
});
