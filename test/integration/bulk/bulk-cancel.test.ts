import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../../shared/config/config.ts';
import { createRuntimeBulkRunner } from '../../../shared/bulk/runtime.ts';
import type { BulkRunner } from '../../../shared/bulk/runner.ts';
import { eventually, isolatedEnv } from '../../support/env.ts';
import { request, sampleOrder } from '../../support/http.ts';
import { startPlatform, type Platform } from '../../support/platform.ts';
import { bulkApp } from './harness.ts';
import { MODULES } from '../../../modules/registry.ts';

// Bulk cancel of queued orders: posted through the API with no order worker running, selected by the
// command search, cancelled one by one by the command canceller; the count of the dry run is what is
// cancelled, and commands of other customers stay queued.
let platform: Platform;
let runner: BulkRunner | undefined;

beforeAll(async () => {
  platform = await startPlatform(loadConfig(isolatedEnv(), { modules: MODULES }), { workers: [] });
});
afterAll(async () => {
  await runner?.stop();
  await platform?.close();
});

async function post(customerId: string): Promise<string> {
  const res = await request<{ orderId: string }>(`${platform.url}/v1/orders`, {
    method: 'POST',
    json: sampleOrder({ customerId }),
  });
  expect(res.status).toBe(202);
  return res.body.orderId;
}

describe('bulk cancel by query', () => {
  it('cancels exactly the queued orders the dry run counted', async () => {
    const mine: string[] = [];
    for (let i = 0; i < 12; i++) mine.push(await post('cust-bulk-cancel'));
    for (let i = 0; i < 4; i++) await post('cust-keep');
    const call = bulkApp(platform.rt);
    const query = { module: 'orders', subject: 'cust-bulk-cancel' };
    const dry = await call<{ count: number; token: string }>('POST', '/v1/bulk-actions/dry-run', {
      action: 'cancel',
      query,
    });
    expect(dry.status).toBe(200);
    expect(dry.body.count).toBe(12);
    const started = await call<{ id: string }>('POST', '/v1/bulk-actions', {
      action: 'cancel',
      query,
      confirmCount: 12,
      token: dry.body.token,
    });
    expect(started.status).toBe(202);

    runner = createRuntimeBulkRunner(platform.rt, { pollIntervalMs: 50, leaseMs: 2_000 });
    runner.start();
    const done = await eventually(
      async () => {
        const res = await call<{ status: string; touched: number; succeeded: number; failed: number }>(
          'GET',
          `/v1/bulk-actions/${started.body.id}`,
        );
        return res.body.status === 'completed' ? res.body : false;
      },
      { what: 'the bulk cancel to complete' },
    );
    expect(done).toMatchObject({ touched: 12, succeeded: 12, failed: 0 });

    const { rows } = await platform.rt.pool.query<{ order_id: string; status: string }>(
      'SELECT order_id::text, status FROM orders WHERE order_id = ANY($1::uuid[])',
      [mine],
    );
    expect(rows).toHaveLength(12);
    expect(rows.every((r) => r.status === 'cancelled')).toBe(true);
    // The other customer's orders are still queued: the dry run counts them, none was touched.
    const others = await call<{ count: number }>('POST', '/v1/bulk-actions/dry-run', {
      action: 'cancel',
      query: { module: 'orders', subject: 'cust-keep' },
    });
    expect(others.body.count).toBe(4);
    const audit = await platform.rt.pool.query<{ action: string; detail: Record<string, unknown> }>(
      `SELECT action, detail FROM audit_log WHERE target = $1 ORDER BY id`,
      [started.body.id],
    );
    expect(audit.rows.map((r) => r.action)).toEqual(['bulk.start', 'bulk.finish']);
    expect(audit.rows[1]!.detail).toMatchObject({ bulkAction: 'cancel', query, expected: 12, succeeded: 12 });
  });
});
