import { Queue } from 'bullmq';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { OrdersQueues, PLACE_ORDER_JOB } from '../../../modules/orders/queue.ts';
import { createFairQueue, type FairQueue } from '../../../shared/fairness/fair-queue.ts';
import type { Tenant } from '../../../shared/fairness/tenants.ts';
import { queueOptions } from '../../../shared/queue/names.ts';
import { testConfig } from '../../support/env.ts';
import { request } from '../../support/http.ts';
import { startPlatform, type Platform } from '../../support/platform.ts';
import { sample } from '../../support/prometheus.ts';

// What KEDA reads (/v1/scaling/{queue}, and /metrics for the Prometheus variant) must be the whole
// backlog: with fairness, all but about FAIRNESS_DEPTH commands wait their turn as BullMQ *delayed*
// jobs with a long hold, and a scaler that counted only the wait list would never see them.
const HOLD_MS = 7 * 86_400_000;
const DEPTH = 3;
const flood: Tenant = {
  id: 'flood',
  policy: { weight: 1, maxInFlight: 0, backlogQuota: 0, subTenants: false },
};

let platform: Platform;
let queue: Queue;
let fair: FairQueue;

beforeAll(async () => {
  platform = await startPlatform(testConfig(), { workers: [] }); // the API alone: nothing drains
  const { redis, config } = { redis: platform.rt.redis, config: platform.config };
  queue = new Queue(
    OrdersQueues.commands,
    queueOptions(redis, config.redis.queuePrefix, OrdersQueues.commands),
  );
  fair = createFairQueue(OrdersQueues.commands, queue.toKey(''), { depth: DEPTH, holdMs: HOLD_MS });
});
afterAll(async () => {
  await queue?.close();
  if (platform) {
    const redis = platform.rt.redis;
    const keys = await redis.keys(`${queue.toKey('')}fair:*`);
    if (keys.length > 0) await redis.del(...keys);
  }
  await platform?.close();
});

describe('scaling on the whole backlog with fairness', () => {
  it('counts commands held for their turn in /v1/scaling backlog and in /metrics, apart from delayed retries', async () => {
    const ids = Array.from({ length: 20 }, (_, i) => `flood-${i}`);
    const admitted = await fair.admit(
      platform.rt.redis,
      ids.map((id) => ({ id, tenant: flood })),
    );
    expect(admitted.filter((a) => a === 'direct')).toHaveLength(DEPTH);
    expect(admitted.filter((a) => a === 'held')).toHaveLength(20 - DEPTH);
    await queue.addBulk(
      ids.map((id, i) => ({
        name: PLACE_ORDER_JOB,
        data: { tenant: flood.id },
        opts: { jobId: id, ...(admitted[i] === 'held' ? { delay: HOLD_MS } : {}) },
      })),
    );
    // A plain delayed job (a retry in backoff): not runnable yet, not in the backlog.
    await queue.add(PLACE_ORDER_JOB, {}, { jobId: 'retrying', delay: 600_000 });
    expect(await queue.getJobCountByTypes('delayed')).toBe(20 - DEPTH + 1); // what BullMQ itself says

    const res = await request<Record<string, unknown>>(`${platform.url}/v1/scaling/orders`);
    expect(res.status).toBe(200);
    expect(res.body).toMatchObject({
      queue: 'orders',
      backlog: 20,
      waiting: DEPTH,
      prioritized: 0,
      held: 20 - DEPTH,
      delayed: 1,
      active: 0,
    });
    expect(res.body.oldestWaitingAgeSeconds).toEqual(expect.any(Number));

    const text = await (await fetch(`${platform.url}/metrics`)).text();
    const jobs = (state: string) => sample(text, 'conveyor_queue_jobs', { queue: 'orders', state });
    // The Prometheus scaler's query sums waiting|prioritized|held.
    expect((jobs('waiting') ?? 0) + (jobs('prioritized') ?? 0) + (jobs('held') ?? 0)).toBe(20);
    expect(jobs('delayed')).toBe(1);
    expect(sample(text, 'conveyor_tenant_backlog', { queue: 'orders', tenant: 'flood' })).toBe(20 - DEPTH);
  });
});
