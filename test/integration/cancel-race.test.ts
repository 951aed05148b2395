import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startApi } from '../../api/server.ts';
import { CommandNotCancellableError, type CancelResult } from '../../shared/commands/cancel.ts';
import type { Config } from '../../shared/config/config.ts';
import { bootstrap, type Runtime } from '../../shared/runtime/bootstrap.ts';
import { WORKER_KINDS, startWorkers } from '../../workers/start.ts';
import { eventually, testConfig } from '../support/env.ts';
import { startFakePayment, type FakePayment } from '../support/fake-payment.ts';
import { request, sampleOrder } from '../support/http.ts';
import { cleanup } from '../support/platform.ts';
import { cancelApp } from './cancel-app.ts';
import { MODULES } from '../../modules/registry.ts';

// Cancels racing the workers (issue #23): every order is cancelled twice, each time at a random moment
// while the real workers decide the orders (the payment service a real HTTP fake that answers slowly,
// so many cancels meet an order a worker holds). Each order ends exactly one way, a cancel that won is
// the only decision it ever gets, and the payment service never hears of a cancelled order.
const ORDERS = 200;
let fake: FakePayment;
let config: Config;
let rt: Runtime;
let url: string;
let cancels: ReturnType<typeof cancelApp>;

beforeAll(async () => {
  fake = await startFakePayment({ mode: 'slow', delayMs: 50 });
  config = testConfig({ PAYMENT_URL: fake.url, ORDERS_CONCURRENCY: '5', ORDERS_BATCH_SIZE: '5' });
  rt = await bootstrap(config, 'test', MODULES);
  await startWorkers(rt, WORKER_KINDS);
  const api = await startApi(rt);
  url = `http://127.0.0.1:${api.port}`;
  cancels = cancelApp(rt);
});
afterAll(async () => {
  await cancels?.close();
  await rt?.lifecycle.close();
  if (config) await cleanup(config);
  await fake?.close();
});

const actor = { actor: 'race', role: null, source: 'api' as const, ip: null, userAgent: null };
type Outcome = CancelResult['outcome'] | `409:${string}`;

describe('cancel racing the workers', () => {
  it(`${ORDERS} orders, two cancels each at random moments: exactly one winner, nothing executed after it`, async () => {
    const outcomes = new Map<string, Outcome[]>();
    const cancelsDone: Promise<void>[] = [];
    const cancelLater = (orderId: string) =>
      new Promise<void>((resolve) => setTimeout(resolve, Math.floor(Math.random() * 3_000))).then(
        async () => {
          let outcome: Outcome;
          try {
            outcome = (await cancels.canceller.cancel('orders', orderId, actor, 'race')).outcome;
          } catch (err) {
            if (!(err instanceof CommandNotCancellableError)) throw err;
            outcome = `409:${err.state}`;
          }
          outcomes.get(orderId)!.push(outcome);
        },
      );
    // Posted in rounds of 25 while the workers (5 at a time, each order ~50 ms at the payment service)
    // work through them: at any moment some orders wait, some run, some are decided.
    for (let round = 0; round < ORDERS / 25; round++) {
      await Promise.all(
        Array.from({ length: 25 }, async (_, k) => {
          const posted = await request(`${url}/v1/orders`, {
            method: 'POST',
            json: sampleOrder({ customerId: `race-${(round * 25 + k) % 7}` }),
          });
          expect(posted.status).toBe(202);
          const orderId = posted.body.orderId as string;
          outcomes.set(orderId, []);
          cancelsDone.push(cancelLater(orderId), cancelLater(orderId));
        }),
      );
    }
    await Promise.all(cancelsDone);
    const ids = [...outcomes.keys()];

    // Every order ends: decided by a worker or cancelled, one row each.
    const rows = await eventually(
      async () => {
        const { rows } = await rt.pool.query<{ order_id: string; status: string }>(
          'SELECT order_id, status FROM orders WHERE order_id = ANY($1::uuid[])',
          [ids],
        );
        return rows.length === ORDERS && rows;
      },
      { timeoutMs: 60_000, what: 'every order decided or cancelled' },
    );
    const status = new Map(rows.map((r) => [r.order_id, r.status]));
    // Nothing left in the queue to execute later.
    await eventually(
      async () => {
        const c = await cancels.queue('orders').getJobCounts('active', 'wait', 'delayed', 'prioritized');
        return Object.values(c).every((n) => n === 0);
      },
      { timeoutMs: 30_000, what: 'the orders queue drained' },
    );

    const cancelled = new Set<string>();
    for (const [orderId, results] of outcomes) {
      const won = results.filter((o) => o === 'cancelled').length;
      const final = status.get(orderId)!;
      expect(won, `order ${orderId}: ${results.join(', ')}`).toBeLessThanOrEqual(1);
      if (won === 1) {
        cancelled.add(orderId);
        expect(final).toBe('cancelled');
        // The other cancel found it cancelled (or came first and met a worker holding it: impossible
        // with a winner after it — a worker that holds an order decides it).
        expect(results.filter((o) => o !== 'cancelled')).toEqual(['already_cancelled']);
      } else {
        expect(final, `order ${orderId}: ${results.join(', ')}`).toMatch(/^(completed|rejected)$/);
        for (const o of results) expect(['409:processing', `409:${final}`]).toContain(o);
      }
    }
    const tally = new Map<string, number>();
    for (const o of [...outcomes.values()].flat()) tally.set(o, (tally.get(o) ?? 0) + 1);
    if (process.env.CANCEL_RACE_TALLY) console.log(Object.fromEntries(tally));
    // The race was real: both sides won sometimes.
    expect(cancelled.size).toBeGreaterThan(0);
    expect(cancelled.size).toBeLessThan(ORDERS);
    // Some cancels met an order a worker was running (and lost to it).
    expect(tally.get('409:processing') ?? 0).toBeGreaterThan(0);

    // Exactly one decision event per order, and a cancelled order's only one is its cancel.
    const { rows: events } = await rt.pool.query<{ aggregate_id: string; event_type: string }>(
      `SELECT aggregate_id, event_type FROM outbox WHERE aggregate_id = ANY($1::text[])`,
      [ids],
    );
    const byOrder = new Map<string, string[]>();
    for (const e of events)
      byOrder.set(e.aggregate_id, [...(byOrder.get(e.aggregate_id) ?? []), e.event_type]);
    for (const orderId of ids) {
      expect(byOrder.get(orderId)).toEqual([
        cancelled.has(orderId)
          ? 'order.cancelled'
          : `order.${status.get(orderId) === 'completed' ? 'placed' : 'rejected'}`,
      ]);
    }
    // The payment service never heard of a cancelled order; every completed one was paid once.
    const paid = fake.calls.map((c) => c.orderId);
    for (const orderId of cancelled) expect(paid).not.toContain(orderId);
    for (const orderId of ids.filter((id) => status.get(id) === 'completed')) {
      expect(paid.filter((p) => p === orderId)).toHaveLength(1);
    }
    // The read model agrees once projected.
    await eventually(
      async () => {
        const { rows: views } = await rt.pool.query<{ n: number }>(
          `SELECT count(*)::int AS n FROM order_view WHERE order_id = ANY($1::uuid[]) AND status = 'cancelled'`,
          [ids],
        );
        return views[0]!.n === cancelled.size;
      },
      { what: 'cancelled orders projected' },
    );
  });
});
