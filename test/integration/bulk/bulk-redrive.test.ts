import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../../shared/config/config.ts';
import { createRuntimeBulkRunner } from '../../../shared/bulk/runtime.ts';
import type { BulkRunner } from '../../../shared/bulk/runner.ts';
import { eventually, isolatedEnv } from '../../support/env.ts';
import { startPlatform, type Platform } from '../../support/platform.ts';
import { bulkApp, ordersJobCount, seedOrderDeadLetters } from './harness.ts';
import { MODULES } from '../../../modules/registry.ts';

// Bulk redrive by query on real PostgreSQL and Redis: the dry run's count is what the runner then
// touches, the confirmation is checked (409 with the fresh count), the audit log holds the exact query
// and the counts, the rate limit holds, and an operator can stop a running action.
let platform: Platform;
let call: ReturnType<typeof bulkApp>;
const runners: BulkRunner[] = [];

interface Progress {
  status: string;
  expected: number;
  touched: number;
  succeeded: number;
  skipped: number;
  failed: number;
  itemsPerSecond: number | null;
  cancelRequested: boolean;
}

beforeAll(async () => {
  platform = await startPlatform(loadConfig(isolatedEnv(), { modules: MODULES }), {
    workers: [],
    api: false,
  });
  call = bulkApp(platform.rt);
});
afterAll(async () => {
  for (const r of runners) await r.stop();
  await platform?.close();
});

function runner(options: { ratePerSecond?: number } = {}): BulkRunner {
  const r = createRuntimeBulkRunner(platform.rt, { pollIntervalMs: 50, leaseMs: 2_000, ...options });
  runners.push(r);
  r.start();
  return r;
}

const finished = (id: string, timeoutMs = 30_000) =>
  eventually(
    async () => {
      const res = await call<Progress>('GET', `/v1/bulk-actions/${id}`);
      return ['completed', 'failed', 'cancelled'].includes(res.body.status) ? res.body : false;
    },
    { timeoutMs, what: `bulk action ${id} to finish` },
  );

async function auditOf(id: string) {
  const { rows } = await platform.rt.pool.query<{
    action: string;
    actor: string;
    detail: Record<string, unknown>;
  }>(`SELECT action, actor, detail FROM audit_log WHERE target = $1 ORDER BY id`, [id]);
  return rows;
}

describe('bulk redrive by query', () => {
  it('counts in the dry run exactly what it then redrives, once each, and audits the query and the counts', async () => {
    const mine = await seedOrderDeadLetters(platform.rt.pool, 30, { tag: 'a1', subject: 'cust-bulk-a' });
    await seedOrderDeadLetters(platform.rt.pool, 7, { tag: 'a2', subject: 'cust-other' });
    const query = { module: 'orders', subject: 'cust-bulk-a' };

    const dry = await call<{ count: number; token: string }>('POST', '/v1/bulk-actions/dry-run', {
      action: 'redrive',
      query,
    });
    expect(dry.status).toBe(200);
    expect(dry.body.count).toBe(30);

    // A count other than the fresh one, or a token for another count: 409 with the fresh count.
    const wrongCount = await call<{ code: string; count: number }>('POST', '/v1/bulk-actions', {
      action: 'redrive',
      query,
      confirmCount: 29,
      token: dry.body.token,
    });
    expect(wrongCount.status).toBe(409);
    expect(wrongCount.headers.get('content-type')).toContain('application/problem+json');
    expect(wrongCount.body).toMatchObject({ code: 'bulk.confirmation_mismatch', count: 30 });
    const otherQuery = await call('POST', '/v1/bulk-actions', {
      action: 'redrive',
      query: { module: 'orders' },
      confirmCount: 30,
      token: dry.body.token,
    });
    expect(otherQuery.status).toBe(409);

    const started = await call<{ id: string; status: string; expected: number }>('POST', '/v1/bulk-actions', {
      action: 'redrive',
      query,
      confirmCount: 30,
      token: dry.body.token,
    });
    expect(started.status).toBe(202);
    expect(started.body).toMatchObject({ status: 'queued', expected: 30 });
    expect(started.headers.get('location')).toBe(`/v1/bulk-actions/${started.body.id}`);

    runner({ ratePerSecond: 1_000 });
    const done = await finished(started.body.id);
    expect(done).toMatchObject({
      status: 'completed',
      expected: 30,
      touched: 30,
      succeeded: 30,
      skipped: 0,
      failed: 0,
    });

    const { rows } = await platform.rt.pool.query<{ id: string; status: string; redrive_count: number }>(
      'SELECT id, status, redrive_count FROM dead_letters WHERE id = ANY($1::text[])',
      [mine.map((d) => d.id)],
    );
    expect(rows).toHaveLength(30);
    expect(rows.every((r) => r.status === 'redriven' && r.redrive_count === 1)).toBe(true);
    const untouched = await platform.rt.pool.query(
      `SELECT 1 FROM dead_letters WHERE subject_id = 'cust-other' AND status = 'pending'`,
    );
    expect(untouched.rowCount).toBe(7);
    expect(await ordersJobCount(platform.rt.redis, platform.config.redis.queuePrefix)).toBe(30);

    const audit = await auditOf(started.body.id);
    expect(audit.map((a) => a.action)).toEqual(['bulk.start', 'bulk.finish']);
    expect(audit[0]).toMatchObject({ actor: 'ops', detail: { bulkAction: 'redrive', query, expected: 30 } });
    expect(audit[1]!.detail).toMatchObject({
      query,
      status: 'completed',
      expected: 30,
      touched: 30,
      succeeded: 30,
      skipped: 0,
      failed: 0,
    });

    const list = await call<{ bulkActions: { id: string }[] }>('GET', '/v1/bulk-actions?limit=10');
    expect(list.body.bulkActions.map((a) => a.id)).toContain(started.body.id);
  });

  it('acts at most at its rate, and reports the measured rate', async () => {
    await seedOrderDeadLetters(platform.rt.pool, 40, { tag: 'b1', subject: 'cust-rate' });
    const query = { module: 'orders', subject: 'cust-rate' };
    const dry = await call<{ count: number; token: string }>('POST', '/v1/bulk-actions/dry-run', {
      action: 'redrive',
      query,
    });
    const started = await call<{ id: string }>('POST', '/v1/bulk-actions', {
      action: 'redrive',
      query,
      confirmCount: dry.body.count,
      token: dry.body.token,
      ratePerSecond: 20,
    });
    expect(started.status).toBe(202);
    runner();
    const done = await finished(started.body.id);
    expect(done).toMatchObject({ status: 'completed', touched: 40, succeeded: 40 });
    // 40 items at 20/s with a burst of 2: at least ~1.9 s of acting.
    expect(done.itemsPerSecond).not.toBeNull();
    expect(done.itemsPerSecond!).toBeLessThanOrEqual(22);
    expect(done.itemsPerSecond!).toBeGreaterThan(10);
  });

  it('stops a running action on request: what it did stays done, the rest is not touched', async () => {
    await seedOrderDeadLetters(platform.rt.pool, 60, { tag: 'c1', subject: 'cust-stop' });
    const query = { module: 'orders', subject: 'cust-stop' };
    const dry = await call<{ count: number; token: string }>('POST', '/v1/bulk-actions/dry-run', {
      action: 'redrive',
      query,
    });
    const started = await call<{ id: string }>('POST', '/v1/bulk-actions', {
      action: 'redrive',
      query,
      confirmCount: dry.body.count,
      token: dry.body.token,
      ratePerSecond: 10,
    });
    runner();
    await eventually(
      async () => (await call<Progress>('GET', `/v1/bulk-actions/${started.body.id}`)).body.touched >= 5,
      { what: 'some items redriven' },
    );
    const cancel = await call<Progress>('POST', `/v1/bulk-actions/${started.body.id}/cancel`);
    expect(cancel.status).toBe(202);
    expect(cancel.body.cancelRequested).toBe(true);
    const done = await finished(started.body.id);
    expect(done.status).toBe('cancelled');
    expect(done.touched).toBeLessThan(60);
    const redriven = await platform.rt.pool.query(
      `SELECT 1 FROM dead_letters WHERE subject_id = 'cust-stop' AND status = 'redriven'`,
    );
    expect(redriven.rowCount).toBe(done.succeeded);
    const again = await call('POST', `/v1/bulk-actions/${started.body.id}/cancel`);
    expect(again.status).toBe(409);
    const audit = await auditOf(started.body.id);
    expect(audit.map((a) => a.action)).toEqual(['bulk.start', 'bulk.cancel', 'bulk.finish']);
    expect(audit[2]!.detail).toMatchObject({ status: 'cancelled', touched: done.touched });
  });

  it('refuses a query a redrive cannot select, and a replay of statuses it cannot replay', async () => {
    const tenant = await call<{ errors: { path: string }[] }>('POST', '/v1/bulk-actions/dry-run', {
      action: 'redrive',
      query: { module: 'orders', tenant: 'acme' },
    });
    expect(tenant.status).toBe(400);
    expect(tenant.body.errors.map((e) => e.path)).toContain('query.tenant');
    const replay = await call<{ errors: { path: string }[] }>('POST', '/v1/bulk-actions/dry-run', {
      action: 'replay',
      query: { status: ['queued'] },
    });
    expect(replay.status).toBe(400);
    expect(replay.body.errors.map((e) => e.path)).toContain('query.status');
    const unknown = await call('GET', '/v1/bulk-actions/00000000-0000-4000-8000-000000000000');
    expect(unknown.status).toBe(404);
  });
});
