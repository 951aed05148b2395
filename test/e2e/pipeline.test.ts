import { OrdersQueues } from '../../modules/orders/queue.ts';
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { eventually, isolatedEnv } from '../support/env.ts';
import { request, sampleOrder } from '../support/http.ts';
import { cleanup } from '../support/platform.ts';
import { loadConfig } from '../../shared/config/config.ts';
import { logRecords, startProcess, startServer, type Proc } from '../support/processes.ts';
import { MODULES } from '../../modules/registry.ts';

const buses = (process.env.E2E_BUSES ?? 'bullmq,kafka,rabbitmq,sqs').split(',').filter(Boolean);

// Real processes — `npm run api` and `npm run workers` entry points — driven over HTTP only.
describe.each(buses)('end to end over HTTP (EVENT_BUS=%s)', (bus) => {
  const env = isolatedEnv({ EVENT_BUS: bus, ORDERS_ATTEMPTS: '3' });
  let api: Proc & { url: string };
  let workers: Proc;
  let redis: Redis;
  let db: pg.Client;

  beforeAll(async () => {
    api = await startServer('api/main.ts', env);
    workers = startProcess('workers/main.ts', env);
    await eventually(() => logRecords(workers).some((l) => l.msg === 'workers started'), {
      timeoutMs: 60_000,
      what: 'workers to start',
    });
    redis = new Redis(env.REDIS_URL!, { maxRetriesPerRequest: null });
    db = new pg.Client({
      connectionString: env.DATABASE_URL,
      options: `-c search_path=${env.DATABASE_SCHEMA}`,
    });
    await db.connect();
  });
  afterAll(async () => {
    await api?.kill();
    await workers?.kill();
    await db?.end();
    redis?.disconnect();
    await cleanup(loadConfig(env, { modules: MODULES }));
  });

  it('200 orders all complete and /v1/stats matches them exactly; poison is dead-lettered while orders flow', async () => {
    const ids: string[] = [];
    let expectedRevenue = 0;
    const queue = new Queue(OrdersQueues.commands, { connection: redis, prefix: env.QUEUE_PREFIX });
    // A foreign producer's malformed job, in the middle of the traffic.
    await queue.add('place-order', { hello: 'world' }, { jobId: 'poison-e2e' });
    const batch = Array.from({ length: 100 }, (_, i) =>
      sampleOrder({
        customerId: `e2e-${i % 7}`,
        items: [{ sku: 's', quantity: 1 + (i % 3), unitPriceCents: 100 + i }],
      }),
    );
    const res = await request<{ orders: { orderId: string }[] }>(`${api.url}/v1/orders/batch`, {
      method: 'POST',
      json: { orders: batch },
    });
    expect(res.status).toBe(202);
    ids.push(...res.body.orders.map((o) => o.orderId));
    expectedRevenue += batch.reduce((s, o) => s + o.items[0]!.quantity * o.items[0]!.unitPriceCents, 0);
    for (let i = 0; i < 100; i++) {
      const order = sampleOrder({
        customerId: `e2e-${i % 5}`,
        items: [{ sku: 't', quantity: 1, unitPriceCents: 10 + i }],
      });
      const r = await request(`${api.url}/v1/orders`, {
        method: 'POST',
        json: order,
        headers: { 'x-correlation-id': `e2e-corr-${bus}-${i}` },
      });
      expect(r.status).toBe(202);
      ids.push(r.body.orderId as string);
      expectedRevenue += 10 + i;
    }
    await queue.close();

    await eventually(
      async () => {
        const views = await Promise.all(
          [0, 1].map((k) =>
            request<{ orders: { status: string }[] }>(
              `${api.url}/v1/orders?ids=${ids.slice(k * 100, k * 100 + 100).join(',')}`,
            ),
          ),
        );
        return views.every(
          (v) => v.body.orders.length === 100 && v.body.orders.every((o) => o.status === 'completed'),
        );
      },
      { timeoutMs: 60_000, what: '200 orders to complete' },
    );
    const stats = await eventually(async () => {
      const s = await request<{
        orderCount: number;
        totals: { currency: string; revenueCents: number; completedCount: number }[];
      }>(`${api.url}/v1/stats`);
      return s.body.orderCount === 200 ? s.body : undefined;
    });
    expect(stats.totals).toEqual([
      expect.objectContaining({ currency: 'EUR', completedCount: 200, revenueCents: expectedRevenue }),
    ]);
    // The write model agrees, each order exactly once.
    const { rows } = await db.query(
      'SELECT count(*)::int AS n, count(DISTINCT order_id)::int AS d, sum(total_cents)::bigint AS rev FROM orders',
    );
    expect(rows[0]).toEqual({ n: 200, d: 200, rev: expectedRevenue });

    const dead = await eventually(async () => {
      const d = await request<{ deadLetters: { messageKey: string; error: string }[] }>(
        `${api.url}/v1/dead-letters`,
      );
      return d.body.deadLetters.find((x) => x.messageKey === 'poison-e2e');
    });
    expect(dead.error).toMatch(/invalid command for queue orders/);
  });

  it('one correlation id follows an order from the HTTP request to the read model', async () => {
    const corr = `e2e-corr-${bus}-7`;
    const apiLines = logRecords(api).filter((l) => l.correlationId === corr);
    const workerLines = logRecords(workers).filter((l) => l.correlationId === corr);
    expect(apiLines.map((l) => l.msg)).toEqual(
      expect.arrayContaining(['order accepted', 'request completed']),
    );
    expect(workerLines.map((l) => l.msg)).toEqual(
      expect.arrayContaining(['command processed', 'event projected']),
    );
    expect(workerLines.every((l) => typeof l.orderId === 'string' || typeof l.eventId === 'string')).toBe(
      true,
    );
  });

  it('SIGTERM: workers finish in-flight jobs, leave nothing active and exit 0', async () => {
    const res = await request<{ orders: { orderId: string }[] }>(`${api.url}/v1/orders/batch`, {
      method: 'POST',
      json: { orders: Array.from({ length: 200 }, () => sampleOrder({ customerId: 'e2e-term' })) },
    });
    expect(res.status).toBe(202);
    const queue = new Queue(OrdersQueues.commands, { connection: redis, prefix: env.QUEUE_PREFIX });
    await eventually(
      async () => (await queue.getActiveCount()) > 0 || (await queue.getCompletedCount()) > 200,
      { intervalMs: 5 },
    );
    expect(await workers.kill('SIGTERM')).toBe(0);
    expect(await queue.getActiveCount()).toBe(0);
    // Whatever was not finished is still waiting, not lost: a new worker completes it.
    workers = startProcess('workers/main.ts', env);
    await eventually(
      async () => {
        const { rows } = await db.query(
          `SELECT count(*)::int AS n FROM orders WHERE customer_id = 'e2e-term'`,
        );
        return rows[0].n === 200;
      },
      { timeoutMs: 60_000, what: 'the remaining orders after restart' },
    );
    await queue.close();
  });
});
