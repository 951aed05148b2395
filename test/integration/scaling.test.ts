import { OrdersQueues } from '../../modules/orders/queue.ts';
import { randomUUID } from 'node:crypto';
import { Queue } from 'bullmq';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { QueueNames } from '../../shared/queue/names.ts';
import { PLACE_ORDER_JOB } from '../../modules/orders/queue.ts';
import { startWorkers } from '../../workers/start.ts';
import { eventually, testConfig } from '../support/env.ts';
import { request, sampleOrder } from '../support/http.ts';
import { startPlatform, type Platform } from '../support/platform.ts';
import { sample } from '../support/prometheus.ts';

// The API alone at first: orders pile up in the queue with nobody to take them, then an order
// worker starts in the same runtime and the backlog drains.
let platform: Platform;
let queue: Queue;
const url = (path: string) => `${platform.url}${path}`;

interface Scaling {
  queue: string;
  backlog: number;
  waiting: number;
  prioritized: number;
  delayed: number;
  active: number;
  failed: number;
  completed: number;
  paused: boolean;
  oldestWaitingAgeSeconds: number;
}

async function scrape(): Promise<string> {
  const res = await fetch(url('/metrics'));
  expect(res.status).toBe(200);
  return res.text();
}

beforeAll(async () => {
  platform = await startPlatform(testConfig(), { workers: [] });
  queue = new Queue(OrdersQueues.commands, {
    connection: platform.rt.redis,
    prefix: platform.config.redis.queuePrefix,
  });
});
afterAll(async () => {
  await queue?.close();
  await platform?.close();
});

describe('GET /v1/scaling/{queue}', () => {
  it('reports the backlog (waiting + prioritized, not delayed) in the endpoint and in /metrics, then drains to 0', async () => {
    const N = 12;
    const ids: string[] = [];
    for (let i = 0; i < N; i++) {
      const res = await request(url('/v1/orders'), { method: 'POST', json: sampleOrder() });
      expect(res.status).toBe(202);
      ids.push(res.body.orderId as string);
    }
    // Two prioritized jobs (BullMQ keeps them in a sorted set, not the wait list) and one delayed.
    const first = await queue.getJob(ids[0]!);
    const job = (orderId: string) => ({ ...first!.data, orderId, correlationId: randomUUID() });
    for (const priority of [1, 5]) {
      const orderId = randomUUID();
      await queue.add(PLACE_ORDER_JOB, job(orderId), { jobId: orderId, priority, attempts: 1 });
    }
    const delayedId = randomUUID();
    await queue.add(PLACE_ORDER_JOB, job(delayedId), { jobId: delayedId, delay: 600_000, attempts: 1 });

    const before = await request<Scaling>(url('/v1/scaling/orders'));
    expect(before.status).toBe(200);
    expect(before.body).toMatchObject({
      queue: 'orders',
      backlog: N + 2,
      waiting: N,
      prioritized: 2,
      delayed: 1,
      active: 0,
      paused: false,
    });
    expect(before.body.oldestWaitingAgeSeconds).toBeGreaterThanOrEqual(0);

    const text = await scrape();
    expect(sample(text, 'conveyor_queue_jobs', { queue: 'orders', state: 'waiting' })).toBe(N);
    expect(sample(text, 'conveyor_queue_jobs', { queue: 'orders', state: 'prioritized' })).toBe(2);
    expect(sample(text, 'conveyor_queue_jobs', { queue: 'orders', state: 'delayed' })).toBe(1);
    expect(
      sample(text, 'conveyor_queue_oldest_waiting_age_seconds', { queue: 'orders' }),
    ).toBeGreaterThanOrEqual(0);
    expect(sample(text, 'conveyor_metrics_collector_up', { collector: 'queues' })).toBe(1);

    await startWorkers(platform.rt, ['orders']);

    const after = await eventually(
      async () => {
        const res = await request<Scaling>(url('/v1/scaling/orders'));
        return res.body.backlog === 0 && res.body.active === 0 && res.body.completed === N + 2
          ? res.body
          : false;
      },
      { what: 'the orders backlog to drain' },
    );
    expect(after).toMatchObject({
      backlog: 0,
      waiting: 0,
      prioritized: 0,
      delayed: 1,
      oldestWaitingAgeSeconds: 0,
    });
    const drained = await scrape();
    expect(sample(drained, 'conveyor_queue_jobs', { queue: 'orders', state: 'waiting' })).toBe(0);
    expect(sample(drained, 'conveyor_queue_jobs', { queue: 'orders', state: 'prioritized' })).toBe(0);
    expect(sample(drained, 'conveyor_queue_jobs', { queue: 'orders', state: 'completed' })).toBe(N + 2);
    expect(sample(drained, 'conveyor_queue_oldest_waiting_age_seconds', { queue: 'orders' })).toBe(0);
  });

  it('answers every known queue, and 404 problem+json for an unknown one', async () => {
    for (const name of Object.values(QueueNames)) {
      const res = await request<Scaling>(url(`/v1/scaling/${name}`));
      expect(res.status).toBe(200);
      expect(res.body.queue).toBe(name);
    }
    const res = await fetch(url('/v1/scaling/no-such-queue'), { headers: { authorization: 'Bearer dev' } });
    expect(res.status).toBe(404);
    expect(res.headers.get('content-type')).toContain('application/problem+json');
    expect(await res.json()).toMatchObject({
      status: 404,
      code: 'resource.not_found',
      instance: '/v1/scaling/no-such-queue',
    });
  });

  it('is behind authentication (KEDA sends a bearer token from a TriggerAuthentication) and documented', async () => {
    const res = await fetch(url('/v1/scaling/orders'));
    expect(res.status).toBe(401);
    const doc = (await (await fetch(url('/openapi.json'))).json()) as { paths: Record<string, unknown> };
    expect(Object.keys(doc.paths)).toContain('/v1/scaling/{queue}');
  });
});
