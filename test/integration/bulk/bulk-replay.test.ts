import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../../shared/config/config.ts';
import { replayId } from '../../../shared/bulk/items.ts';
import { createRuntimeBulkRunner } from '../../../shared/bulk/runtime.ts';
import type { BulkRunner } from '../../../shared/bulk/runner.ts';
import { eventually, isolatedEnv } from '../../support/env.ts';
import { request, sampleOrder } from '../../support/http.ts';
import { startPlatform, type Platform } from '../../support/platform.ts';
import { bulkApp } from './harness.ts';
import { MODULES } from '../../../modules/registry.ts';

// Bulk replay of rejected orders: orders in a currency the module does not support are rejected by a
// real order worker; a replay by query posts each again as a new order (same payload, a derived id,
// `replayOf` naming it) through the API's fair admission, and the worker decides it. A runner resumed
// after losing every recorded outcome posts nothing twice.
let platform: Platform;
const runners: BulkRunner[] = [];

beforeAll(async () => {
  platform = await startPlatform(loadConfig(isolatedEnv(), { modules: MODULES }), {
    workers: ['orders', 'refunds'],
  });
});
afterAll(async () => {
  for (const r of runners) await r.stop();
  await platform?.close();
});

async function post(customerId: string, currency: string): Promise<string> {
  const res = await request<{ orderId: string }>(`${platform.url}/v1/orders`, {
    method: 'POST',
    json: sampleOrder({ customerId, currency }),
  });
  expect(res.status).toBe(202);
  return res.body.orderId;
}

interface Row {
  order_id: string;
  status: string;
  replay_of: string | null;
  currency: string;
  items: unknown;
  tenant: string | null;
  accepted_by: string | null;
  correlation_id: string;
}

const ordersOf = async (customerId: string) =>
  (
    await platform.rt.pool.query<Row>(
      `SELECT order_id::text, status, replay_of::text, currency, items, tenant, accepted_by, correlation_id
         FROM orders WHERE customer_id = $1 ORDER BY order_id`,
      [customerId],
    )
  ).rows;

function runUntilDone(call: ReturnType<typeof bulkApp>, id: string) {
  const runner = createRuntimeBulkRunner(platform.rt, { pollIntervalMs: 50, leaseMs: 2_000 });
  runners.push(runner);
  runner.start();
  return eventually(
    async () => {
      const res = await call<{
        status: string;
        touched: number;
        succeeded: number;
        skipped: number;
        failed: number;
      }>('GET', `/v1/bulk-actions/${id}`);
      return res.body.status === 'completed' ? res.body : false;
    },
    { what: 'the bulk replay to complete', timeoutMs: 30_000 },
  );
}

describe('bulk replay by query', () => {
  it('replays exactly the rejected orders the dry run counted, each as a new linked order, once', async () => {
    const rejected: string[] = [];
    for (let i = 0; i < 6; i++) rejected.push(await post('cust-replay', 'XXX'));
    const completed = [await post('cust-replay', 'EUR'), await post('cust-replay', 'EUR')];
    for (let i = 0; i < 2; i++) await post('cust-other', 'XXX');
    await eventually(
      async () => (await ordersOf('cust-replay')).length === 8 && (await ordersOf('cust-other')).length === 2,
      {
        what: 'the orders to be decided',
      },
    );
    const call = bulkApp(platform.rt);
    const query = { module: 'orders', subject: 'cust-replay' };

    const notReplayable = await call<{ errors: { path: string }[] }>('POST', '/v1/bulk-actions/dry-run', {
      action: 'replay',
      query: { ...query, status: ['completed'] },
    });
    expect(notReplayable.status).toBe(400);
    expect(notReplayable.body.errors.map((e) => e.path)).toContain('query.status');

    const dry = await call<{ count: number; token: string }>('POST', '/v1/bulk-actions/dry-run', {
      action: 'replay',
      query,
    });
    expect(dry.status).toBe(200);
    expect(dry.body.count).toBe(6);
    const started = await call<{ id: string }>('POST', '/v1/bulk-actions', {
      action: 'replay',
      query,
      confirmCount: 6,
      token: dry.body.token,
    });
    expect(started.status).toBe(202);
    const bulkId = started.body.id;

    const done = await runUntilDone(call, bulkId);
    expect(done).toMatchObject({ touched: 6, succeeded: 6, skipped: 0, failed: 0 });

    // Each replay is a new order under the derived id, decided by the worker (rejected again: same payload).
    const replays = await eventually(
      async () => {
        const rows = (await ordersOf('cust-replay')).filter((r) => r.replay_of !== null);
        return rows.length === 6 ? rows : false;
      },
      { what: 'the replays to be decided' },
    );
    const originals = new Map((await ordersOf('cust-replay')).map((r) => [r.order_id, r]));
    expect(new Set(replays.map((r) => r.replay_of))).toEqual(new Set(rejected));
    for (const r of replays) {
      const original = originals.get(r.replay_of!)!;
      expect(r.order_id).toBe(replayId(bulkId, original.order_id));
      expect(r).toMatchObject({
        status: 'rejected',
        currency: 'XXX',
        items: original.items,
        tenant: original.tenant,
        accepted_by: original.accepted_by,
        correlation_id: original.correlation_id,
      });
    }
    expect(replays.some((r) => completed.includes(r.replay_of!))).toBe(false);
    expect((await ordersOf('cust-other')).every((r) => r.replay_of === null)).toBe(true);

    const one = await request<{ orderId: string; replayOf?: string; status: string }>(
      `${platform.url}/v1/orders/${replays[0]!.order_id}`,
    );
    expect(one.status).toBe(200);
    expect(one.body).toMatchObject({ status: 'rejected', replayOf: replays[0]!.replay_of });
    const plain = await request<Record<string, unknown>>(`${platform.url}/v1/orders/${rejected[0]}`);
    expect(plain.body).not.toHaveProperty('replayOf');

    const audit = await platform.rt.pool.query<{ action: string; detail: Record<string, unknown> }>(
      `SELECT action, detail FROM audit_log WHERE target = $1 ORDER BY id`,
      [bulkId],
    );
    expect(audit.rows.map((r) => r.action)).toEqual(['bulk.start', 'bulk.finish']);
    expect(audit.rows[1]!.detail).toMatchObject({ bulkAction: 'replay', query, expected: 6, succeeded: 6 });

    // A crash that lost every recorded outcome: the items are pending again and a new runner resumes.
    // It posts the same ids, finds them decided and skips them: no second copy.
    await platform.rt.pool.query(
      `UPDATE bulk_action_items SET outcome = NULL, detail = NULL, done_at = NULL WHERE bulk_id = $1`,
      [bulkId],
    );
    await platform.rt.pool.query(
      `UPDATE bulk_actions SET status = 'running', finished_at = NULL, touched = 0, succeeded = 0, skipped = 0,
              failed = 0, lease_owner = NULL, lease_expires_at = NULL WHERE id = $1`,
      [bulkId],
    );
    const again = await runUntilDone(call, bulkId);
    expect(again).toMatchObject({ touched: 6, succeeded: 0, skipped: 6, failed: 0 });
    expect(await ordersOf('cust-replay')).toHaveLength(14);
  });

  it('skips the commands of a module without a replay hook, saying why', async () => {
    // A refund past its order's total: rejected by the refunds worker.
    const order = await post('cust-refunds', 'EUR');
    await eventually(async () => (await ordersOf('cust-refunds'))[0]?.status === 'completed', {
      what: 'the order to complete',
    });
    const refund = await request<{ refundId: string }>(`${platform.url}/v1/orders/${order}/refunds`, {
      method: 'POST',
      json: { amountCents: 1_000_000 },
    });
    expect(refund.status).toBe(202);
    await eventually(
      async () =>
        (
          await platform.rt.pool.query(`SELECT 1 FROM refunds WHERE refund_id = $1 AND status = 'rejected'`, [
            refund.body.refundId,
          ])
        ).rowCount === 1,
      { what: 'the refund to be rejected' },
    );
    const call = bulkApp(platform.rt);
    const query = { module: 'refunds' };
    const dry = await call<{ count: number; token: string }>('POST', '/v1/bulk-actions/dry-run', {
      action: 'replay',
      query,
    });
    expect(dry.body.count).toBe(1);
    const started = await call<{ id: string }>('POST', '/v1/bulk-actions', {
      action: 'replay',
      query,
      confirmCount: 1,
      token: dry.body.token,
    });
    expect(await runUntilDone(call, started.body.id)).toMatchObject({ touched: 1, skipped: 1, succeeded: 0 });
    const { rows } = await platform.rt.pool.query<{ detail: string }>(
      'SELECT detail FROM bulk_action_items WHERE bulk_id = $1',
      [started.body.id],
    );
    expect(rows).toEqual([{ detail: 'module refunds does not replay its commands' }]);
  });

  it('derives the replay id from the bulk action and the original: a UUID v4, the same every time', () => {
    const a = replayId('00000000-0000-4000-8000-000000000001', '00000000-0000-4000-8000-0000000000aa');
    expect(a).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    expect(replayId('00000000-0000-4000-8000-000000000001', '00000000-0000-4000-8000-0000000000aa')).toBe(a);
    expect(replayId('00000000-0000-4000-8000-000000000002', '00000000-0000-4000-8000-0000000000aa')).not.toBe(
      a,
    );
  });
});
