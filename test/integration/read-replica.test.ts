import { spawnSync } from 'node:child_process';
import { Queue } from 'bullmq';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { commandQueues } from '../../shared/queue/names.ts';
import { AuditActions, insertAudit } from '../../shared/audit/audit-log.ts';
import { createPgDeadLetterSink } from '../../shared/dead-letters/dead-letter.ts';
import { createPool, type Pool } from '../../shared/db/pool.ts';
import { replicaFailure } from '../../shared/db/read-pools.ts';
import { eventually, testConfig } from '../support/env.ts';
import { request, sampleOrder } from '../support/http.ts';
import { startPlatform, type Platform } from '../support/platform.ts';
import { replicatedPostgres, type ReplicatedPostgres } from '../support/postgres-replica.ts';
import { sample } from '../support/prometheus.ts';

// The whole platform on a private primary with a real streaming replica as DATABASE_READ_URL. Pausing
// replay freezes the replica: what the API answers then shows where it read, and that replica lag
// never turns an accepted order or refund into a 404.
let pgs: ReplicatedPostgres;
let platform: Platform;
/** Our own read-only look at the replica (application_name tells it apart from the API's pool). */
let onReplica: Pool;
const url = (path: string) => `${platform.url}${path}`;

type Body = Record<string, unknown>;

beforeAll(async () => {
  pgs = await replicatedPostgres(['conveyor']);
  const config = testConfig({
    DATABASE_URL: pgs.primary.url('conveyor'),
    DATABASE_READ_URL: pgs.replica.url('conveyor'),
    DATABASE_CREATE: 'false',
  });
  platform = await startPlatform(config);
  onReplica = createPool({
    ...config.database,
    url: pgs.replica.url('conveyor'),
    poolMax: 2,
    readOnly: true,
    applicationName: 'test-replica-probe',
  });
});
afterAll(async () => {
  await onReplica?.end();
  await platform?.close();
  await pgs?.destroy();
});

async function metrics(): Promise<string> {
  const res = await fetch(url('/metrics'));
  expect(res.status).toBe(200);
  return res.text();
}

async function place(customerId: string): Promise<string> {
  const res = await request(url('/v1/orders'), { method: 'POST', json: sampleOrder({ customerId }) });
  expect(res.status).toBe(202);
  return res.body.orderId as string;
}

/** Until the primary's read model has the order (the replica may not). */
async function projectedOnPrimary(orderId: string): Promise<void> {
  await eventually(
    async () =>
      (await platform.rt.pool.query('SELECT 1 FROM order_view WHERE order_id = $1', [orderId])).rowCount ===
      1,
    { what: `order ${orderId} in the primary's read model` },
  );
}

/**
 * GETs `path` until the primary's `table` has the row (or the answer is not a 200), and returns every
 * status answered meanwhile.
 */
async function untilOnPrimary(path: string, table: string, column: string, id: string): Promise<number[]> {
  const statuses: number[] = [];
  await eventually(
    async () => {
      const res = await request(url(path));
      statuses.push(res.status);
      if (res.status !== 200) return true;
      const { rowCount } = await platform.rt.pool.query(`SELECT 1 FROM ${table} WHERE ${column} = $1`, [id]);
      return rowCount === 1;
    },
    { what: `${path} in the primary's ${table}` },
  );
  return statuses;
}

/** Removes a finished job from its command queue: from then on only PostgreSQL knows the command. */
async function trimCompleted(module: string, jobId: string): Promise<void> {
  const queue = new Queue(commandQueues(module).commands, {
    connection: platform.rt.redis,
    prefix: platform.config.redis.queuePrefix,
  });
  try {
    await eventually(async () => (await queue.getJob(jobId))?.finishedOn, { what: `job ${jobId} finished` });
    await queue.clean(0, 0, 'completed');
    expect(await queue.getJob(jobId)).toBeUndefined();
  } finally {
    await queue.close();
  }
}

const onReplicaHas = async (table: string, column: string, id: string) =>
  (await onReplica.query(`SELECT 1 FROM ${table} WHERE ${column} = $1`, [id])).rowCount === 1;

describe('with a read replica (DATABASE_READ_URL)', () => {
  it('only the API query side connects to the replica: no worker, migration or command does', async () => {
    const customer = 'c-rr-conn';
    const orderId = await place(customer);
    await projectedOnPrimary(orderId);
    await pgs.caughtUp();
    expect((await request(url(`/v1/customers/${customer}/orders`))).status).toBe(200);
    const { rows } = await onReplica.query<{ name: string }>(
      `SELECT DISTINCT application_name AS name FROM pg_stat_activity
        WHERE datname = current_database() AND backend_type = 'client backend' AND pid <> pg_backend_pid()`,
    );
    expect(rows.map((r) => r.name)).toEqual(['conveyor-api-reads']);
  });

  it('reads lists, stats, dead letters and the audit log from the replica, and converges when it replays', async () => {
    const customer = 'c-rr-lists';
    const first = await place(customer);
    await projectedOnPrimary(first);
    await pgs.caughtUp();
    await pgs.pauseReplay();
    try {
      const second = await place(customer);
      await projectedOnPrimary(second);
      const audit = `audit-target-${second}`;
      await insertAudit(platform.rt.pool, {
        actor: 'test',
        role: null,
        source: 'api',
        ip: null,
        userAgent: null,
        action: AuditActions.deadLetterDiscard,
        target: audit,
        detail: {},
      });
      const deadLetterId = `test-rr-${second}`;
      await createPgDeadLetterSink(platform.rt.pool).record({
        id: deadLetterId,
        transport: 'bullmq',
        origin: 'orders',
        kind: 'command',
        messageKey: null,
        payload: Buffer.from('{}'),
        headers: {},
        error: 'boom',
        stack: null,
        attempts: 1,
        correlationId: null,
        subjectId: second,
        firstFailedAt: null,
      });
      expect(await onReplicaHas('order_view', 'order_id', second)).toBe(false);

      // What the frozen replica has, not what the primary has.
      const page = await request<{ orders: { orderId: string }[] }>(url(`/v1/customers/${customer}/orders`));
      expect(page.status).toBe(200);
      expect(page.body.orders.map((o) => o.orderId)).toEqual([first]);
      const stats = await request<{ totals: { currency: string; completedCount: number }[] }>(
        url('/v1/stats'),
      );
      const primaryCount = await platform.rt.pool.query<{ n: number }>(
        "SELECT count(*)::int AS n FROM order_view WHERE status = 'completed'",
      );
      expect(stats.body.totals.find((t) => t.currency === 'EUR')?.completedCount).toBe(
        primaryCount.rows[0]!.n - 1,
      );
      const dls = await request<{ deadLetters: { id: string }[] }>(url(`/v1/dead-letters?orderId=${second}`));
      expect(dls.body.deadLetters).toEqual([]);
      const entries = await request<{ entries: { target: string }[] }>(url('/v1/audit?limit=500'));
      expect(entries.body.entries.map((e) => e.target)).not.toContain(audit);

      // The lag is visible while replay is paused.
      const paused = await metrics();
      expect(sample(paused, 'conveyor_pg_replica_lag_bytes')).toBeGreaterThan(0);
      expect(sample(paused, 'conveyor_pg_replica_lag_seconds')).toBeGreaterThan(0);
      expect(sample(paused, 'conveyor_metrics_collector_up', { collector: 'pg_replica' })).toBe(1);

      await pgs.resumeReplay();
      await eventually(
        async () => {
          const res = await request<{ orders: unknown[] }>(url(`/v1/customers/${customer}/orders`));
          return res.body.orders.length === 2;
        },
        { what: 'the customer page to show both orders once the replica replays' },
      );
      const after = await request<{ deadLetters: { id: string }[] }>(
        url(`/v1/dead-letters?orderId=${second}`),
      );
      expect(after.body.deadLetters.map((d) => d.id)).toEqual([deadLetterId]);
      const audited = await request<{ entries: { target: string }[] }>(url('/v1/audit?limit=500'));
      expect(audited.body.entries.map((e) => e.target)).toContain(audit);
      await eventually(
        async () => {
          const text = await metrics();
          return (
            sample(text, 'conveyor_pg_replica_lag_bytes') === 0 &&
            sample(text, 'conveyor_pg_replica_lag_seconds') === 0
          );
        },
        { what: 'the replica lag back to 0' },
      );
      // The replica's series lint clean, like every other (metrics.test.ts checks the rest).
      const lint = spawnSync('promtool', ['check', 'metrics'], { input: await metrics(), encoding: 'utf8' });
      expect(lint.error).toBeUndefined();
      expect(`${lint.stdout}${lint.stderr}`.split('\n').filter((l) => l.includes('pg_replica'))).toEqual([]);
    } finally {
      await pgs.resumeReplay();
    }
  });

  it('never answers 404 for an accepted order or refund the replica has not replayed', async () => {
    const customer = 'c-rr-orders';
    const order = await place(customer);
    await projectedOnPrimary(order);
    await pgs.caughtUp();
    await pgs.pauseReplay();
    try {
      const before = sample(await metrics(), 'conveyor_pg_replica_fallbacks_total', { reason: 'miss' }) ?? 0;
      // Every answer from the 202 on: queued / processing (queue), decided (primary's write model),
      // completed (primary's read model) — never 404, though the replica has none of it. Its job is
      // then trimmed, as removeOnComplete or an operator's clean does: only the primary has it.
      const fresh = await place(customer);
      const answered = await untilOnPrimary(`/v1/orders/${fresh}`, 'order_view', 'order_id', fresh);
      expect(answered.filter((status) => status !== 200)).toEqual([]);
      await trimCompleted('orders', fresh);
      const trimmed = await request(url(`/v1/orders/${fresh}`));
      expect(trimmed.status).toBe(200);
      expect(trimmed.body).toMatchObject({
        orderId: fresh,
        customerId: customer,
        totalCents: 2500,
        status: 'completed',
        updatedAt: expect.any(String),
      });
      expect(await onReplicaHas('order_view', 'order_id', fresh)).toBe(false);
      expect(await onReplicaHas('orders', 'order_id', fresh)).toBe(false);

      const unknown = '00000000-0000-4000-8000-000000000000';
      const many = await request<{ orders: { orderId: string }[]; missing: string[] }>(
        url(`/v1/orders?ids=${order},${fresh},${unknown}`),
      );
      expect(many.body.orders.map((o) => o.orderId)).toEqual([order, fresh]);
      expect(many.body.missing).toEqual([unknown]);
      expect((await request(url(`/v1/orders/${unknown}`))).status).toBe(404);

      // A refund of the order the replica has: accepted (the command checks the primary), readable at
      // once, decided through the primary while the replica still shows the order without it.
      const res = await request(url(`/v1/orders/${order}/refunds`), {
        method: 'POST',
        json: { amountCents: 1000, reason: 'damaged' },
      });
      expect(res.status).toBe(202);
      const refundId = res.body.refundId as string;
      const statuses = await untilOnPrimary(`/v1/refunds/${refundId}`, 'refund_view', 'refund_id', refundId);
      expect(statuses.filter((status) => status !== 200)).toEqual([]);
      await trimCompleted('refunds', refundId);
      const refund = await request(url(`/v1/refunds/${refundId}`));
      expect(refund.status).toBe(200);
      expect(refund.body).toMatchObject({ orderId: order, amountCents: 1000 });
      expect(await onReplicaHas('refund_view', 'refund_id', refundId)).toBe(false);
      const stale = await request<Body>(url(`/v1/orders/${order}`));
      expect(stale.body).toMatchObject({ orderId: order, refundedCents: 0, refunds: [] });
      const after = sample(await metrics(), 'conveyor_pg_replica_fallbacks_total', { reason: 'miss' }) ?? 0;
      expect(after).toBeGreaterThan(before);

      await pgs.resumeReplay();
      await eventually(
        async () => (await request<Body>(url(`/v1/orders/${order}`))).body.refundedCents === 1000,
        { what: 'the order to show its refund once the replica replays' },
      );
      const reads = sample(await metrics(), 'conveyor_pg_replica_fallbacks_total', { reason: 'miss' });
      // Now the replica has both: no more fallbacks.
      expect((await request(url(`/v1/orders/${fresh}`))).status).toBe(200);
      expect((await request(url(`/v1/refunds/${refundId}`))).status).toBe(200);
      expect(sample(await metrics(), 'conveyor_pg_replica_fallbacks_total', { reason: 'miss' })).toBe(reads);
    } finally {
      await pgs.resumeReplay();
    }
  });

  it('reads the primary while the replica is down, and the replica again once it is back', async () => {
    const customer = 'c-rr-down';
    const orderId = await place(customer);
    await projectedOnPrimary(orderId);
    await pgs.replica.stop('fast');
    try {
      const page = await request<{ orders: { orderId: string }[] }>(url(`/v1/customers/${customer}/orders`));
      expect(page.status).toBe(200);
      expect(page.body.orders.map((o) => o.orderId)).toEqual([orderId]);
      expect((await request(url(`/v1/orders/${orderId}`))).status).toBe(200);
      const down = await metrics();
      expect(sample(down, 'conveyor_pg_replica_fallbacks_total', { reason: 'error' })).toBeGreaterThan(0);
      expect(sample(down, 'conveyor_metrics_collector_up', { collector: 'pg_replica' })).toBe(0);
    } finally {
      await pgs.replica.start();
    }
    const readsBefore = sample(await metrics(), 'conveyor_pg_replica_reads_total') ?? 0;
    await eventually(
      async () => {
        await request(url(`/v1/customers/${customer}/orders`));
        return (sample(await metrics(), 'conveyor_pg_replica_reads_total') ?? 0) > readsBefore;
      },
      { what: 'reads to go to the replica again', timeoutMs: 15_000, intervalMs: 250 },
    );
  });
});

describe('which replica errors the primary answers instead', () => {
  it('falls back when the replica is down or behind, never for errors the primary would repeat', () => {
    const err = (code?: string) => Object.assign(new Error('x'), code === undefined ? {} : { code });
    expect(replicaFailure(err())).toBe('unavailable'); // "Connection terminated unexpectedly"
    expect(replicaFailure(err('ECONNREFUSED'))).toBe('unavailable');
    expect(replicaFailure(err('57P01'))).toBe('unavailable'); // admin shutdown
    expect(replicaFailure(err('53300'))).toBe('unavailable'); // too many connections
    expect(replicaFailure(err('40001'))).toBe('behind'); // cancelled: conflict with recovery
    expect(replicaFailure(err('42P01'))).toBe('behind'); // a table a migration just added
    expect(replicaFailure(err('57014'))).toBeUndefined(); // statement timeout: slow on the primary too
    expect(replicaFailure(err('22P02'))).toBeUndefined();
  });
});
