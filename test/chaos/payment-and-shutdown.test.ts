import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { eventually } from '../support/env.ts';
import { startFakePayment, type FakePayment } from '../support/fake-payment.ts';
import type { Proc } from '../support/processes.ts';
import {
  chaosEnv,
  linesWith,
  makeOrders,
  openDb,
  ordersQueue,
  placeBatch,
  startApi,
  startWorkers,
  teardown,
} from './harness.ts';
import { awaitReconciled } from './reconcile.ts';

// Scenarios 6 and 7, end to end with processes: the payment service fails and recovers behind the
// circuit breaker; then SIGTERM while payment calls are really in flight.
describe('chaos: the payment dependency fails, recovers, and a worker is stopped mid-call', () => {
  let fake: FakePayment;
  let env: Record<string, string>;
  let db: pg.Pool;
  let api: Proc & { url: string };
  let orders: Proc;
  const procs: (Proc | undefined)[] = [];
  const accepted: string[] = [];

  beforeAll(async () => {
    fake = await startFakePayment('approve');
    env = chaosEnv({
      PAYMENT_URL: fake.url,
      CIRCUIT_BREAKER_TIMEOUT_MS: '2000',
      CIRCUIT_BREAKER_RESET_TIMEOUT_MS: '500',
      CIRCUIT_BREAKER_VOLUME_THRESHOLD: '5',
      ORDERS_CONCURRENCY: '20',
      ORDERS_ATTEMPTS: '3',
    });
    db = openDb(env);
    [api, orders] = await Promise.all([
      startApi(env, procs),
      startWorkers(env, 'orders', {}, procs),
      startWorkers(env, 'outbox,projections', {}, procs),
    ]);
  });
  afterAll(async () => {
    await teardown(env, procs);
    await db?.end();
    await fake?.close();
  });

  it('payment down: the breaker opens, orders wait without burning attempts, nothing is dead-lettered; recovered: all complete', async () => {
    fake.set('fail');
    const ids = await placeBatch(api.url, makeOrders(200, 'pay'));
    accepted.push(...ids);
    const opened = () => linesWith(orders, 'circuit breaker state changed').filter((l) => l.to === 'open');
    // Open, probe after 500 ms, probe fails, open again: the worker keeps protecting the dependency.
    await eventually(() => opened().length >= 2, { what: 'the payment breaker to open twice' });
    expect(opened()[0]).toMatchObject({ breaker: 'payment', from: 'closed' });
    expect(fake.callsSinceSet()).toBeLessThan(ids.length);

    const { queue, close } = ordersQueue(env);
    try {
      // Orders the rules reject (XTS) need no payment and may finish; every other one is still in the
      // queue with no attempt made (BullMQ counts an attempt on completion and on failure).
      const jobs = await Promise.all(ids.map((id) => queue.getJob(id)));
      const needPayment = jobs.filter((j) => j?.data.order.currency !== 'XTS');
      expect(needPayment).toHaveLength(180);
      expect(needPayment.every((j) => j !== undefined && j.attemptsMade === 0)).toBe(true);
      expect(await queue.getFailedCount()).toBe(0);
    } finally {
      await close();
    }
    const { rows } = await db.query<{ completed: number; dead: number }>(
      `SELECT (SELECT count(*)::int FROM orders WHERE status = 'completed') AS completed,
              (SELECT count(*)::int FROM dead_letters) AS dead`,
    );
    expect(rows[0]).toEqual({ completed: 0, dead: 0 });

    fake.set('approve');
    const report = await awaitReconciled(db, accepted, { explainWith: procs });
    expect(report.byStatus).toEqual({ completed: 180, rejected: 20, dead_lettered: 0 });
    expect(report.deadLetters).toBe(0);
    const attempts = await db.query<{ max: number }>(`SELECT max(attempts)::int AS max FROM orders`);
    expect(attempts.rows[0]!.max).toBe(1);
    expect(linesWith(orders, 'circuit breaker state changed').at(-1)).toMatchObject({
      from: 'half-open',
      to: 'closed',
    });
  });

  it('SIGTERM with payment calls in flight: they finish and commit, nothing is left active, exit 0', async () => {
    fake.set({ mode: 'slow', delayMs: 800 });
    const ids = await placeBatch(api.url, makeOrders(100, 'term'));
    accepted.push(...ids);
    // Wait until the worker is blocked in real payment calls, then stop it.
    await eventually(() => fake.callsSinceSet() >= 10, { intervalMs: 10, what: 'payment calls in flight' });
    const inFlight = fake.calls.slice(-fake.callsSinceSet()).map((c) => c.orderId!);
    expect(await orders.kill('SIGTERM')).toBe(0);
    expect(linesWith(orders, 'shutdown complete')).toHaveLength(1);

    const { queue, close } = ordersQueue(env);
    try {
      expect(await queue.getActiveCount()).toBe(0);
      // Every order whose payment call had started was finished and committed before the exit.
      const { rows } = await db.query<{ n: number }>(
        `SELECT count(*)::int AS n FROM orders WHERE order_id = ANY($1::uuid[])`,
        [inFlight],
      );
      expect(rows[0]!.n).toBe(inFlight.length);
      expect(await queue.getFailedCount()).toBe(0);
    } finally {
      await close();
    }

    // The rest waited in the queue; a new worker finishes them.
    fake.set('approve');
    orders = await startWorkers(env, 'orders', {}, procs);
    const report = await awaitReconciled(db, accepted, { explainWith: procs });
    expect(report.byStatus).toEqual({ completed: 270, rejected: 30, dead_lettered: 0 });
    expect(report.deadLetters).toBe(0);
  });
});
