import { OrdersQueues } from '../../modules/orders/queue.ts';
import { Queue } from 'bullmq';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { eventually, testConfig } from '../support/env.ts';
import { request, sampleOrder } from '../support/http.ts';
import { startPlatform, type Platform } from '../support/platform.ts';

// API + order worker + outbox relay + projections in one process, on the BullMQ bus.
let platform: Platform;
let orders: Queue;
const url = (path: string) => `${platform.url}${path}`;
const query = <T extends Record<string, unknown>>(sql: string, params: unknown[] = []) =>
  platform.rt.pool.query<T>(sql, params).then((r) => r.rows);

async function place(body: Record<string, unknown>): Promise<string> {
  const res = await request(url('/v1/orders'), { method: 'POST', json: body });
  expect(res.status).toBe(202);
  return res.body.orderId as string;
}

async function statusOf(orderId: string, status: string): Promise<Record<string, unknown>> {
  return eventually(
    async () => {
      const res = await request(url(`/v1/orders/${orderId}`));
      // A decided order reads from the write model before it is projected (updatedAt null).
      return res.status === 200 && res.body.status === status && res.body.updatedAt !== null
        ? res.body
        : undefined;
    },
    { what: `order ${orderId} to be ${status} in the read model` },
  );
}

beforeAll(async () => {
  platform = await startPlatform(testConfig({ ORDERS_ATTEMPTS: '3', ORDERS_BACKOFF_MS: '20' }));
  orders = new Queue(OrdersQueues.commands, {
    connection: platform.rt.redis,
    prefix: platform.config.redis.queuePrefix,
  });
});
afterAll(async () => {
  await orders.close();
  await platform.close();
});

describe('order pipeline', () => {
  it('completes an order: write model, outbox published, read model, stats, one correlation id throughout', async () => {
    const res = await request(url('/v1/orders'), {
      method: 'POST',
      json: sampleOrder({ customerId: 'c-complete' }),
      headers: { 'x-correlation-id': 'corr-pipeline-1' },
    });
    const orderId = res.body.orderId as string;
    const view = await statusOf(orderId, 'completed');
    expect(view).toMatchObject({
      customerId: 'c-complete',
      totalCents: 2500,
      attempts: 1,
      correlationId: 'corr-pipeline-1',
    });
    const [row] = await query('SELECT status, total_cents, correlation_id FROM orders WHERE order_id = $1', [
      orderId,
    ]);
    expect(row).toEqual({ status: 'completed', total_cents: 2500, correlation_id: 'corr-pipeline-1' });
    const events = await eventually(async () => {
      const rows = await query(
        'SELECT event_type, correlation_id, published_at FROM outbox WHERE aggregate_id = $1',
        [orderId],
      );
      return rows.length === 1 && rows[0]?.published_at ? rows : undefined;
    });
    expect(events[0]).toMatchObject({ event_type: 'order.placed', correlation_id: 'corr-pipeline-1' });
  });

  it('rejects a business-invalid order without retrying it', async () => {
    const orderId = await place(sampleOrder({ customerId: 'c-reject', currency: 'XTS' }));
    const view = await statusOf(orderId, 'rejected');
    expect(view.attempts).toBe(1);
    expect(view.lastError).toMatch(/currency XTS/);
    const [event] = await query('SELECT event_type FROM outbox WHERE aggregate_id = $1', [orderId]);
    expect(event?.event_type).toBe('order.rejected');
  });

  it('a redelivered command creates no second order and no second event', async () => {
    const orderId = await place(sampleOrder({ customerId: 'c-redeliver' }));
    await statusOf(orderId, 'completed');
    const job = await orders.getJob(orderId);
    // The same command again, as a redelivery after a crash would bring it.
    await orders.add('place-order', job!.data, { jobId: `${orderId}-again` });
    await eventually(async () => (await orders.getJobState(`${orderId}-again`)) === 'completed');
    expect(await query('SELECT 1 FROM orders WHERE order_id = $1', [orderId])).toHaveLength(1);
    expect(await query('SELECT 1 FROM outbox WHERE aggregate_id = $1', [orderId])).toHaveLength(1);
  });

  it('a malformed job from a foreign producer goes to the dead letters while other orders keep flowing', async () => {
    await orders.add(
      'place-order',
      { orderId: 'nope', order: { items: 'many' } },
      { jobId: 'foreign-poison-1', attempts: 5 },
    );
    const after = await place(sampleOrder({ customerId: 'c-after-poison' }));
    await statusOf(after, 'completed');
    const list = await eventually(async () => {
      const res = await request<{ deadLetters: Record<string, unknown>[] }>(
        url('/v1/dead-letters?transport=bullmq'),
      );
      return res.body.deadLetters.find((d) => d.messageKey === 'foreign-poison-1');
    });
    expect(list).toMatchObject({ origin: 'orders', kind: 'command', attempts: 1, status: 'pending' });
    expect(list.error).toMatch(/invalid command for queue orders/);
    expect(JSON.parse(list.payload as string)).toEqual({ orderId: 'nope', order: { items: 'many' } });
    // Operators also see it in the BullMQ dead-letter queue (Bull Board).
    const dlq = new Queue(OrdersQueues.deadLetters, {
      connection: platform.rt.redis,
      prefix: platform.config.redis.queuePrefix,
    });
    expect(await dlq.getJob(list.id as string)).toBeDefined();
    await dlq.close();
  });

  it('an order whose attempts run out is dead-lettered, then redriven to completion', async () => {
    // A real database failure for one customer: a trigger that refuses its rows.
    await platform.rt.pool.query(`
      CREATE FUNCTION refuse_c_fail() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN IF NEW.customer_id = 'c-fail' AND NEW.status <> 'dead_lettered' THEN RAISE EXCEPTION 'disk on fire'; END IF; RETURN NEW; END $$;
      CREATE TRIGGER refuse_c_fail BEFORE INSERT OR UPDATE ON orders FOR EACH ROW EXECUTE FUNCTION refuse_c_fail();`);
    const orderId = await place(sampleOrder({ customerId: 'c-fail' }));
    const neighbour = await place(sampleOrder({ customerId: 'c-neighbour' }));
    await statusOf(neighbour, 'completed'); // batched with the failing one, yet committed
    const dead = await statusOf(orderId, 'dead_lettered');
    expect(dead.attempts).toBe(3);
    expect(dead.lastError).toMatch(/disk on fire/);
    const [dl] = await query<{ id: string; attempts: number; correlation_id: string }>(
      'SELECT id, attempts, correlation_id FROM dead_letters WHERE order_id = $1',
      [orderId],
    );
    expect(dl?.attempts).toBe(3);

    await platform.rt.pool.query('DROP TRIGGER refuse_c_fail ON orders');
    const redrive = await request(url(`/v1/dead-letters/${dl!.id}/redrive`), { method: 'POST' });
    expect(redrive.status).toBe(202);
    const done = await statusOf(orderId, 'completed');
    expect(done.correlationId).toBe(dl!.correlation_id);
    expect((await request(url(`/v1/dead-letters/${dl!.id}/redrive`), { method: 'POST' })).status).toBe(409);
    const [row] = await query('SELECT status FROM dead_letters WHERE id = $1', [dl!.id]);
    expect(row?.status).toBe('redriven');
    expect(await query('SELECT 1 FROM orders WHERE order_id = $1', [orderId])).toHaveLength(1);
  });

  it('pages a customer’s orders with a cursor and keeps per-customer totals', async () => {
    const ids = [];
    for (let i = 0; i < 5; i++)
      ids.push(
        await place(
          sampleOrder({ customerId: 'c-pages', items: [{ sku: 's', quantity: 1, unitPriceCents: 100 + i }] }),
        ),
      );
    await Promise.all(ids.map((id) => statusOf(id, 'completed')));
    const seen: string[] = [];
    let cursor: string | null = null;
    let pages = 0;
    do {
      const res: { body: { orders: { orderId: string }[]; nextCursor: string | null; totals: unknown[] } } =
        await request(url(`/v1/customers/c-pages/orders?limit=2${cursor ? `&cursor=${cursor}` : ''}`));
      seen.push(...res.body.orders.map((o) => o.orderId));
      cursor = res.body.nextCursor;
      pages += 1;
      if (pages === 1)
        expect(res.body.totals).toEqual([
          {
            currency: 'EUR',
            completedCount: 5,
            rejectedCount: 0,
            revenueCents: 510,
            refundedCents: 0,
            netRevenueCents: 510,
          },
        ]);
    } while (cursor);
    expect(pages).toBe(3);
    expect(new Set(seen)).toEqual(new Set(ids));
    expect((await request(url('/v1/customers/c-pages/orders?cursor=garbage'))).status).toBe(400);
  });
});
