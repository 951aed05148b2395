import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { eventually } from '../support/env.ts';
import { startFakePayment, type FakePayment } from '../support/fake-payment.ts';
import type { Proc } from '../support/processes.ts';
import {
  chaosEnv,
  countOrders,
  crash,
  makeOrders,
  openDb,
  ordersQueue,
  placeBatch,
  startApi,
  startWorkers,
  teardown,
} from './harness.ts';
import { awaitReconciled } from './reconcile.ts';

// Scenario 1: kill -9 the order worker in the middle of 1,000 orders, start another one. BullMQ's
// stalled-job check (lock 2 s, checked every 1 s here; 30 s by default) hands the dead worker's
// in-flight jobs to the new one; the write model's idempotency makes re-running them harmless.
describe('chaos: kill -9 an order worker mid-run', () => {
  let fake: FakePayment;
  let env: Record<string, string>;
  let db: pg.Pool;
  const procs: (Proc | undefined)[] = [];

  beforeAll(async () => {
    // A slightly slow payment service paces the worker, so the kill lands with jobs in flight.
    fake = await startFakePayment({ mode: 'slow', delayMs: 40 });
    env = chaosEnv({ PAYMENT_URL: fake.url, ORDERS_CONCURRENCY: '20', ORDERS_BATCH_SIZE: '20' });
    db = openDb(env);
  });
  afterAll(async () => {
    await teardown(env, procs);
    await db?.end();
    await fake?.close();
  });

  it('1,000 orders: the crashed worker’s jobs are recovered, each order decided exactly once, read models agree', async () => {
    const [api, first] = await Promise.all([
      startApi(env, procs),
      startWorkers(env, 'orders', {}, procs),
      startWorkers(env, 'outbox,projections', {}, procs),
    ]);
    const { queue, close } = ordersQueue(env);
    try {
      const accepted = await placeBatch(api.url, makeOrders(1_000, 'kill9'));
      await eventually(async () => (await countOrders(db)) >= 150, {
        what: '150 orders decided before the kill',
      });
      await crash(first);

      // The dead worker's jobs are stranded in `active` under locks nobody renews.
      const stranded = await queue.getActiveCount();
      expect(stranded).toBeGreaterThan(0);
      expect(await countOrders(db)).toBeLessThan(1_000);

      await startWorkers(env, 'orders', {}, procs);
      const report = await awaitReconciled(db, accepted, { explainWith: procs, timeoutMs: 90_000 });
      expect(report.byStatus).toEqual({ completed: 900, rejected: 100, dead_lettered: 0 });
      expect(report.deadLetters).toBe(0);
      // Every job finished in BullMQ too: none failed, none left behind.
      await eventually(async () => (await queue.getCompletedCount()) === 1_000, {
        what: 'all 1,000 jobs completed',
      });
      expect(await queue.getFailedCount()).toBe(0);
      expect(await queue.getActiveCount()).toBe(0);
    } finally {
      await close();
    }
  });
});
