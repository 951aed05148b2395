import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { randomUUID } from 'node:crypto';
import { createOrdersQueue, type OrdersQueue } from '../../modules/orders/queue.ts';
import { createCommandQueue } from '../../shared/queue/command-queue.ts';
import { commandQueues } from '../../shared/queue/names.ts';
import { eventually, testConfig } from '../support/env.ts';
import { request, sampleOrder } from '../support/http.ts';
import { startPlatform, type Platform } from '../support/platform.ts';

// API_MAX_BACKLOG: once the orders backlog reaches it, the API sheds load with 503 + Retry-After and
// enqueues nothing. No workers run, so every accepted order stays in the backlog.
let platform: Platform;
let queue: OrdersQueue;

beforeAll(async () => {
  platform = await startPlatform(testConfig({ API_MAX_BACKLOG: '5' }), { workers: [] });
  queue = createOrdersQueue(platform.rt.redis, platform.config.redis.queuePrefix);
});
afterAll(async () => {
  await queue.close();
  await platform.close();
});

describe('load shedding', () => {
  it('answers 503 with Retry-After once the backlog reaches API_MAX_BACKLOG, and enqueues nothing then', async () => {
    let accepted = 0;
    const shed = await eventually(
      async () => {
        const res = await request(`${platform.url}/v1/orders`, { method: 'POST', json: sampleOrder() });
        if (res.status === 202) accepted += 1;
        return res.status === 503 ? res : undefined;
      },
      { what: 'a 503 once the backlog is full', intervalMs: 100 },
    );
    expect(accepted).toBeGreaterThanOrEqual(5);
    expect(shed.headers.get('retry-after')).toMatch(/^\d+$/);
    expect(shed.body).toMatchObject({ status: 503, code: 'service.overloaded' });
    expect(shed.body.detail).toBe('the orders backlog is over its ceiling; retry later');
    const counts = await queue.getJobCounts('waiting', 'delayed', 'prioritized');
    expect(Object.values(counts).reduce((a, b) => a + b, 0)).toBe(accepted);
    const batch = await request(`${platform.url}/v1/orders/batch`, {
      method: 'POST',
      json: { orders: [sampleOrder()] },
    });
    expect(batch.status).toBe(503);
  });

  // Issue #20: a refund shed by load answered "the orders backlog is over its ceiling". Each command
  // module sheds on its own queue's backlog, and says which.
  it('sheds a refund on the refunds backlog and names refunds, not orders', async () => {
    const refunds = createCommandQueue(
      platform.rt.redis,
      platform.config.redis.queuePrefix,
      commandQueues('refunds').commands,
    );
    try {
      // Five refunds waiting (no worker runs): the refunds backlog is at API_MAX_BACKLOG.
      await refunds.addBulk(
        Array.from({ length: 5 }, () => ({ name: 'filler', data: {}, opts: { jobId: randomUUID() } })),
      );
      const shed = await eventually(
        async () => {
          const res = await request(`${platform.url}/v1/orders/${randomUUID()}/refunds`, {
            method: 'POST',
            json: { amountCents: 100 },
          });
          return res.status === 503 ? res : undefined;
        },
        { what: 'a refund shed by load', intervalMs: 100 },
      );
      expect(shed.headers.get('retry-after')).toMatch(/^\d+$/);
      expect(shed.body).toMatchObject({
        status: 503,
        code: 'service.overloaded',
        detail: 'the refunds backlog is over its ceiling; retry later',
      });
      expect(JSON.stringify(shed.body)).not.toContain('orders backlog');
    } finally {
      await refunds.obliterate({ force: true });
      await refunds.close();
    }
  });
});
