import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { eventually } from '../support/env.ts';
import { startFakePayment, type FakePayment } from '../support/fake-payment.ts';
import type { Proc } from '../support/processes.ts';
import { ownPostgres, type OwnPostgres } from '../support/postgres-server.ts';
import {
  chaosEnv,
  countOrders,
  linesWith,
  makeOrders,
  openDb,
  placeBatch,
  startApi,
  startWorkers,
  teardown,
} from './harness.ts';
import { awaitReconciled } from './reconcile.ts';

// Scenario 4: the write model's Postgres stops for a few seconds mid-run (our own cluster, not the
// machine's). Order jobs fail and retry with backoff (10 attempts here), the relay and the projection
// consumers back off and retry too; once Postgres is back everything completes, nothing is
// dead-lettered for a short outage, and the read models agree with the write model.
describe('chaos: Postgres stops mid-run', () => {
  let postgres: OwnPostgres;
  let fake: FakePayment;
  let env: Record<string, string>;
  let db: pg.Pool;
  const procs: (Proc | undefined)[] = [];

  beforeAll(async () => {
    [postgres, fake] = await Promise.all([ownPostgres(), startFakePayment({ mode: 'slow', delayMs: 50 })]);
    // Created up front: API and workers booting together would race to create it.
    await postgres.createDatabase('conveyor_chaos');
    env = chaosEnv({
      DATABASE_URL: postgres.url('conveyor_chaos'),
      PAYMENT_URL: fake.url,
      ORDERS_CONCURRENCY: '10',
      ORDERS_BATCH_SIZE: '10',
      ORDERS_ATTEMPTS: '10',
      ORDERS_BACKOFF_MS: '200',
      ORDERS_BACKOFF_MAX_MS: '2000',
      BUS_MAX_ATTEMPTS: '15',
      BUS_BACKOFF_MS: '200',
    });
    db = openDb(env);
  });
  afterAll(async () => {
    await teardown(env, procs);
    await db?.end();
    await fake?.close();
    await postgres?.destroy();
  });

  it('jobs retry through the outage and complete; nothing dead-lettered; read models reconcile', async () => {
    const [api, workers] = await Promise.all([
      startApi(env, procs),
      startWorkers(env, 'orders,outbox,projections', {}, procs),
    ]);
    const accepted = await placeBatch(api.url, makeOrders(300, 'pg'));
    await eventually(async () => (await countOrders(db)) >= 30, {
      what: '30 orders decided before the outage',
    });

    await postgres.stop('fast');
    // Down until the order worker has really felt it (attempts failing), then back.
    await eventually(() => linesWith(workers, 'command attempt failed; will retry').length >= 5, {
      what: 'order attempts to fail while Postgres is down',
    });
    await postgres.start();

    const report = await awaitReconciled(db, accepted, { explainWith: procs, timeoutMs: 90_000 });
    // Nobody crashed on the lost connections: the same processes rode out the outage.
    expect([api.child.exitCode, workers.child.exitCode, workers.child.signalCode]).toEqual([
      null,
      null,
      null,
    ]);
    expect(report.byStatus).toEqual({ completed: 270, rejected: 30, dead_lettered: 0 });
    expect(report.deadLetters).toBe(0);
    // Some orders needed more than one attempt: the outage was felt, and ridden out.
    const { rows } = await db.query<{ max: number }>(`SELECT max(attempts)::int AS max FROM orders`);
    expect(rows[0]!.max).toBeGreaterThan(1);
  });
});
