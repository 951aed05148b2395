import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createRuntimeBulkRunner } from '../../../shared/bulk/runtime.ts';
import type { BulkRunner } from '../../../shared/bulk/runner.ts';
import { eventually, testConfig } from '../../support/env.ts';
import { startPlatform, type Platform } from '../../support/platform.ts';
import { bulkApp, ordersJobCount } from './harness.ts';

// A replay takes its tenant's turn through the same fair admission as an API post: with no worker to
// drain the queue, a wait list of one and a backlog quota of one, two of four replays of one tenant are
// taken (one waiting, one held) and the other two fail with the quota's reason — nothing is added past it.
let platform: Platform;
let runner: BulkRunner | undefined;

beforeAll(async () => {
  platform = await startPlatform(testConfig({ FAIRNESS_DEPTH: '1', TENANT_BACKLOG_QUOTA: '1' }), {
    workers: [],
    api: false,
  });
});
afterAll(async () => {
  await runner?.stop();
  await platform?.close();
});

describe('bulk replay admission', () => {
  it('fails the replays over their tenant’s backlog quota, with the reason', async () => {
    for (let i = 0; i < 4; i++) {
      await platform.rt.pool.query(
        `INSERT INTO orders (order_id, customer_id, currency, total_cents, items, status, reason, attempts,
                             correlation_id, accepted_at, accepted_by, tenant)
         VALUES ($1, 'cust-quota', 'XXX', 100, $2, 'rejected', 'currency XXX is not supported', 1, $3,
                 now() - interval '1 minute', 'shop', 'shop')`,
        [
          `00000000-0000-4000-8000-0000000000${String(i).padStart(2, '0')}`,
          JSON.stringify([{ sku: 's', quantity: 1, unitPriceCents: 100 }]),
          `corr-quota-${i}`,
        ],
      );
    }
    const call = bulkApp(platform.rt);
    const query = { module: 'orders', subject: 'cust-quota' };
    const dry = await call<{ count: number; token: string }>('POST', '/v1/bulk-actions/dry-run', {
      action: 'replay',
      query,
    });
    expect(dry.body.count).toBe(4);
    const started = await call<{ id: string }>('POST', '/v1/bulk-actions', {
      action: 'replay',
      query,
      confirmCount: 4,
      token: dry.body.token,
    });
    expect(started.status).toBe(202);
    // One item at a time: each admission sees the one before it added.
    runner = createRuntimeBulkRunner(platform.rt, { pollIntervalMs: 50, leaseMs: 2_000, concurrency: 1 });
    runner.start();
    const done = await eventually(
      async () => {
        const res = await call<{ status: string }>('GET', `/v1/bulk-actions/${started.body.id}`);
        return res.body.status === 'completed' ? res.body : false;
      },
      { what: 'the bulk replay to complete' },
    );
    expect(done).toMatchObject({ touched: 4, succeeded: 2, failed: 2, skipped: 0 });
    const { rows } = await platform.rt.pool.query<{ detail: string }>(
      `SELECT detail FROM bulk_action_items WHERE bulk_id = $1 AND outcome = 'failed'`,
      [started.body.id],
    );
    expect(rows).toHaveLength(2);
    for (const r of rows) expect(r.detail).toMatch(/tenant shop is at its backlog quota/);
    expect(await ordersJobCount(platform.rt.redis, platform.config.redis.queuePrefix)).toBe(2);
  });
});
