import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startApi, type ApiServer } from '../../api/server.ts';
import type { Config } from '../../shared/config/config.ts';
import { bootstrap, type Runtime } from '../../shared/runtime/bootstrap.ts';
import { startWorkers } from '../../workers/start.ts';
import { eventually, testConfig } from '../support/env.ts';
import { startFakePayment, type FakePayment } from '../support/fake-payment.ts';
import { request, sampleOrder } from '../support/http.ts';
import { cleanup } from '../support/platform.ts';
import { readEvents } from './results/replicas.ts';
import { cancelApp } from './cancel-app.ts';
import { createCommandCanceller } from '../../shared/commands/cancel.ts';
import { MODULES } from '../../modules/registry.ts';

// Cancel (issue #23) on real PostgreSQL and Redis: the API and the relays and projector run, the
// command workers not at first — so posted commands stay queued until the test starts them.
let fake: FakePayment;
let config: Config;
let rt: Runtime;
let api: ApiServer;
let url: string;
let cancels: ReturnType<typeof cancelApp>;

beforeAll(async () => {
  fake = await startFakePayment('approve');
  config = testConfig({ PAYMENT_URL: fake.url });
  rt = await bootstrap(config, 'test', MODULES);
  await startWorkers(rt, ['outbox', 'projections']);
  api = await startApi(rt);
  url = `http://127.0.0.1:${api.port}`;
  cancels = cancelApp(rt);
});
afterAll(async () => {
  await cancels?.close();
  await rt?.lifecycle.close();
  if (config) await cleanup(config);
  await fake?.close();
});

async function cancel(path: string, body?: unknown, headers: Record<string, string> = {}) {
  const res = await cancels.app.request(path, {
    method: 'POST',
    headers: body === undefined ? headers : { 'content-type': 'application/json', ...headers },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
}

async function placeOrder(): Promise<string> {
  const res = await request(`${url}/v1/orders`, { method: 'POST', json: sampleOrder() });
  expect(res.status).toBe(202);
  return res.body.orderId as string;
}

const row = async (table: string, key: string, id: string) =>
  (await rt.pool.query<{ status: string }>(`SELECT status FROM ${table} WHERE ${key} = $1`, [id])).rows[0];

describe('POST /v1/orders/{orderId}/cancel', () => {
  it('cancels a queued order: write model, event, audit, read model, GET, a Prefer: wait waiter and a stream', async () => {
    const orderId = await placeOrder();
    expect((await request(`${url}/v1/orders/${orderId}`)).body.status).toBe('queued');
    const waiting = request(`${url}/v1/orders/${orderId}`, { headers: { prefer: 'wait=20' } });
    const stream = fetch(`${url}/v1/orders/${orderId}/events`, { headers: { authorization: 'Bearer dev' } });
    await eventually(() => api.outcomes.listening === 2, { what: 'the waiter and the stream listening' });
    const started = Date.now();

    const res = await cancel(`/v1/orders/${orderId}/cancel`, { reason: 'posted by mistake' });
    expect(res.status).toBe(200);
    expect(res.body).toMatchObject({
      outcome: 'cancelled',
      command: { module: 'orders', id: orderId, status: 'cancelled', subject: 'c-42', apiKey: 'dev' },
    });

    // The waiter answers on the notice, long before its 20 s.
    const waited = await waiting;
    expect(waited.status).toBe(200);
    expect(waited.body).toMatchObject({ orderId, status: 'cancelled' });
    expect(Date.now() - started).toBeLessThan(10_000);
    const { events } = await readEvents(await stream);
    expect(events.map((e) => e.event)).toContain('cancelled');

    expect(await row('orders', 'order_id', orderId)).toEqual({ status: 'cancelled' });
    const outbox = await rt.pool.query<{
      event_type: string;
      envelope: { payload: Record<string, unknown> };
    }>('SELECT event_type, envelope FROM outbox WHERE aggregate_id = $1', [orderId]);
    expect(outbox.rows.map((r) => r.event_type)).toEqual(['order.cancelled']);
    expect(outbox.rows[0]!.envelope.payload).toMatchObject({
      orderId,
      cancelledBy: 'dev',
      reason: 'posted by mistake',
      totalCents: 2500,
    });
    const audit = await rt.pool.query(
      'SELECT actor, action, target, detail FROM audit_log WHERE target = $1',
      [`orders/${orderId}`],
    );
    expect(audit.rows).toEqual([
      {
        actor: 'dev',
        action: 'command.cancel',
        target: `orders/${orderId}`,
        detail: { module: 'orders', id: orderId, reason: 'posted by mistake', outcome: 'cancelled' },
      },
    ]);
    // Projected: the read model says cancelled, and GET reads it from there.
    await eventually(async () => (await row('order_view', 'order_id', orderId))?.status === 'cancelled', {
      what: 'the read model',
    });
    const got = await request(`${url}/v1/orders/${orderId}`);
    expect(got.body).toMatchObject({ orderId, status: 'cancelled', lastError: 'posted by mistake' });
    expect(got.body.updatedAt).not.toBeNull();
    // Gone from the queue: no worker can take it.
    expect(await cancels.queue('orders').getJob(orderId)).toBeUndefined();
  });

  it("documents each cancellable module's route in the OpenAPI document", () => {
    const doc = cancels.app.getOpenAPI31Document({ openapi: '3.1.0', info: { title: 't', version: '1' } });
    expect(Object.keys(doc.paths ?? {}).sort()).toEqual([
      '/v1/orders/{orderId}/cancel',
      '/v1/refunds/{refundId}/cancel',
    ]);
  });

  it('is idempotent: a cancel of a cancelled order answers 200 already_cancelled and changes nothing', async () => {
    const orderId = await placeOrder();
    expect((await cancel(`/v1/orders/${orderId}/cancel`)).body.outcome).toBe('cancelled');
    const again = await cancel(`/v1/orders/${orderId}/cancel`);
    expect(again.status).toBe(200);
    expect(again.body).toMatchObject({ outcome: 'already_cancelled', command: { status: 'cancelled' } });
    const events = await rt.pool.query('SELECT 1 FROM outbox WHERE aggregate_id = $1', [orderId]);
    expect(events.rowCount).toBe(1);
  });

  it('of concurrent cancels of one order, exactly one cancels it', async () => {
    const orderId = await placeOrder();
    const results = await Promise.all(
      Array.from({ length: 20 }, () => cancels.canceller.cancel('orders', orderId, actor)),
    );
    expect(results.filter((r) => r.outcome === 'cancelled')).toHaveLength(1);
    expect(results.filter((r) => r.outcome === 'already_cancelled')).toHaveLength(19);
    const events = await rt.pool.query('SELECT 1 FROM outbox WHERE aggregate_id = $1', [orderId]);
    expect(events.rowCount).toBe(1);
  });

  it('adds the job back with its data and id when the cancel cannot commit', async () => {
    const orderId = await placeOrder();
    const queue = cancels.queue('orders');
    const before = await queue.getJob(orderId);
    // A pool whose transactions cannot commit (the connection is lost at COMMIT, say).
    const failing = new Proxy(rt.pool, {
      get(target, key, receiver) {
        if (key !== 'connect') {
          const value = Reflect.get(target, key, receiver) as unknown;
          // The pool's own methods on the pool itself (its `query` connects with a callback).
          return typeof value === 'function' ? (value as (...a: unknown[]) => unknown).bind(target) : value;
        }
        return async () => {
          const client = await target.connect();
          return new Proxy(client, {
            get(c, k, r) {
              if (k !== 'query') {
                const value = Reflect.get(c, k, r) as unknown;
                return typeof value === 'function' ? (value as (...a: unknown[]) => unknown).bind(c) : value;
              }
              return async (text: unknown, values?: unknown) => {
                if (text === 'COMMIT') {
                  await c.query('ROLLBACK');
                  throw new Error('connection lost at COMMIT');
                }
                return c.query(text as string, values as unknown[]);
              };
            },
          });
        };
      },
    });
    const canceller = createCommandCanceller({
      pool: failing,
      modules: MODULES,
      queue: () => queue,
      redis: rt.redis,
      prefix: config.redis.queuePrefix,
      logger: rt.logger,
    });
    await expect(canceller.cancel('orders', orderId, actor)).rejects.toThrow('connection lost at COMMIT');
    expect(await row('orders', 'order_id', orderId)).toBeUndefined();
    const after = await queue.getJob(orderId);
    expect(after?.data).toEqual(before!.data);
    expect(after?.name).toBe(before!.name);
    // And it can still be cancelled for real.
    expect((await cancels.canceller.cancel('orders', orderId, actor)).outcome).toBe('cancelled');
  });

  it("answers 404 for an unknown order, and for another key's order when the caller is not admin", async () => {
    const unknown = await cancel('/v1/orders/00000000-0000-4000-8000-000000000000/cancel');
    expect(unknown.status).toBe(404);
    expect((await cancel('/v1/orders/not-a-uuid/cancel')).status).toBe(404);
    const orderId = await placeOrder();
    const other = await cancel(`/v1/orders/${orderId}/cancel`, undefined, {
      'x-test-principal': 'someone-else',
      'x-test-scopes': 'orders:write',
    });
    expect(other.status).toBe(404);
    expect(await row('orders', 'order_id', orderId)).toBeUndefined();
    // Its own key (not admin) may.
    const own = await cancel(`/v1/orders/${orderId}/cancel`, undefined, {
      'x-test-principal': 'dev',
      'x-test-scopes': 'orders:write',
    });
    expect(own.body.outcome).toBe('cancelled');
  });

  it('counts a cancelled batch item as decided: the batch completes, batch.completed is emitted once', async () => {
    const posted = await request<{ batchId: string; orders: { orderId: string }[] }>(
      `${url}/v1/orders/batch`,
      {
        method: 'POST',
        json: { orders: [sampleOrder(), sampleOrder()] },
      },
    );
    expect(posted.status).toBe(202);
    const { batchId } = posted.body;
    const [first, second] = posted.body.orders.map((o) => o.orderId);
    const batch = async () =>
      (
        await rt.pool.query<{ cancelled: number; completed_at: Date | null }>(
          'SELECT cancelled, completed_at FROM batches WHERE batch_id = $1',
          [batchId],
        )
      ).rows[0]!;
    await cancels.canceller.cancel('orders', first!, actor);
    expect(await batch()).toMatchObject({ cancelled: 1, completed_at: null });
    await cancels.canceller.cancel('orders', second!, actor);
    expect((await batch()).completed_at).not.toBeNull();
    const completed = await rt.pool.query<{ envelope: { payload: Record<string, unknown> } }>(
      `SELECT envelope FROM outbox WHERE event_type = 'batch.completed' AND aggregate_id = $1`,
      [batchId],
    );
    expect(completed.rows.map((r) => r.envelope.payload)).toEqual([
      expect.objectContaining({ batchId, total: 2, completed: 0, cancelled: 2 }),
    ]);
  });

  it('cancels a queued refund; a decided order or refund answers 409 naming its state', async () => {
    // Workers from now on: orders complete (the refund below needs a completed order).
    await startWorkers(rt, ['orders', 'refunds']);
    const done = await request(`${url}/v1/orders`, {
      method: 'POST',
      json: sampleOrder(),
      headers: { prefer: 'wait=20' },
    });
    expect(done.body.status).toBe('completed');
    const orderId = done.body.orderId as string;
    const conflict = await cancel(`/v1/orders/${orderId}/cancel`);
    expect(conflict.status).toBe(409);
    expect(conflict.body).toMatchObject({ code: 'command.not_cancellable', state: 'completed' });
    expect(conflict.body.detail).toContain('completed');

    const refund = await request(`${url}/v1/orders/${orderId}/refunds`, {
      method: 'POST',
      json: { amountCents: 500 },
      headers: { prefer: 'wait=20' },
    });
    expect(refund.body.status).toBe('completed');
    const refundConflict = await cancel(`/v1/refunds/${refund.body.refundId as string}/cancel`);
    expect(refundConflict.status).toBe(409);
    expect(refundConflict.body).toMatchObject({ state: 'completed' });
  });

  it('cancels a refund that waits for its turn, and its order does not count it', async () => {
    // A refund held back (delayed, as a retry's backoff or a fair hold keeps it) is not running: cancellable.
    const done = await request(`${url}/v1/orders`, {
      method: 'POST',
      json: sampleOrder(),
      headers: { prefer: 'wait=20' },
    });
    const orderId = done.body.orderId as string;
    const refundId = '11111111-1111-4111-8111-111111111111';
    const refunds = cancels.queue('refunds');
    await refunds.add(
      'refund-order',
      {
        refundId,
        orderId,
        correlationId: 'corr-cancel-refund',
        requestedAt: new Date().toISOString(),
        refund: { amountCents: 700, reason: 'late delivery' },
      },
      { jobId: refundId, delay: 60_000 },
    );
    const res = await cancels.canceller.cancel('refunds', refundId, actor, 'customer changed their mind');
    expect(res).toMatchObject({ outcome: 'cancelled', command: { status: 'cancelled', subject: orderId } });
    expect(await refunds.getJob(refundId)).toBeUndefined();
    expect(await row('refunds', 'refund_id', refundId)).toEqual({ status: 'cancelled' });
    await eventually(async () => (await row('refund_view', 'refund_id', refundId))?.status === 'cancelled', {
      what: 'the refund read model',
    });
    const got = await request(`${url}/v1/refunds/${refundId}`);
    expect(got.body).toMatchObject({ refundId, status: 'cancelled', detail: 'customer changed their mind' });
    const order = await request(`${url}/v1/orders/${orderId}`);
    expect(order.body.refundedCents).toBe(0);
  });
});

const actor = { actor: 'operator', role: 'admin', source: 'dashboard' as const, ip: null, userAgent: null };
