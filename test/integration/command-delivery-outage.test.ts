import { randomUUID } from 'node:crypto';
import { Writable } from 'node:stream';
import { Redis } from 'ioredis';
import { afterAll, expect, it } from 'vitest';
import type { OrderJob } from '../../modules/orders/domain.ts';
import { createOrdersQueue, PLACE_ORDER_JOB } from '../../modules/orders/queue.ts';
import { createLogger } from '../../shared/observability/logger.ts';
import { commandJobOptions } from '../../shared/queue/command-queue.ts';
import { createOrderWorker } from '../support/order-worker.ts';
import { eventually, migratedPool, testConfig } from '../support/env.ts';
import { cleanup } from '../support/platform.ts';
import { ownPostgres, type OwnPostgres } from '../support/postgres-server.ts';

// Issue #19's incident in small: the write model's PostgreSQL stops while orders are being processed,
// then starts again (refusing connections, then "the database system is starting up"). An outage is
// nobody's fault: with ORDERS_ATTEMPTS=2 and each order failing many times over while it lasts, every
// order still completes on attempt 1 and nothing becomes a dead letter. A private cluster, so the
// machine's PostgreSQL is never touched.

const closers: (() => Promise<void>)[] = [];
afterAll(async () => {
  for (const close of closers.splice(0).reverse()) await close().catch(() => undefined);
});

it(
  'a stopped and restarted PostgreSQL costs orders no attempt and makes no dead letter',
  { timeout: 180_000 },
  async () => {
    const postgres: OwnPostgres = await ownPostgres();
    closers.push(() => postgres.destroy());
    await postgres.createDatabase('conveyor_outage');
    const config = testConfig({
      DATABASE_URL: postgres.url('conveyor_outage'),
      ORDERS_ATTEMPTS: '2',
      ORDERS_BACKOFF_MS: '20',
      ORDERS_BACKOFF_MAX_MS: '100',
    });
    const pool = await migratedPool(config);
    const redis = new Redis(config.redis.url, { maxRetriesPerRequest: null });
    const queue = createOrdersQueue(redis, config.redis.queuePrefix);
    const logs: Record<string, unknown>[] = [];
    const sink = new Writable({
      write(chunk: Buffer, _enc, done) {
        for (const line of chunk.toString('utf8').split('\n').filter(Boolean))
          logs.push(JSON.parse(line) as Record<string, unknown>);
        done();
      },
    });
    const logger = createLogger({ level: 'info', service: 'test', destination: sink });
    const worker = createOrderWorker(
      { pool, logger },
      {
        redisUrl: config.redis.url,
        queuePrefix: config.redis.queuePrefix,
        ...config.workers.orders,
        snoozeMs: 50,
        snoozeMaxMs: 400,
        shutdownGraceMs: 5_000,
      },
    );
    closers.push(async () => {
      await worker.close();
      await queue.close();
      redis.disconnect();
      await pool.end();
      await cleanup(config);
    });

    await postgres.stop('fast');
    const ids = Array.from({ length: 6 }, () => randomUUID());
    for (const orderId of ids) {
      const data: OrderJob = {
        orderId,
        correlationId: `outage-${orderId}`,
        acceptedAt: new Date().toISOString(),
        order: {
          customerId: 'c-outage',
          currency: 'EUR',
          items: [{ sku: 'a', quantity: 1, unitPriceCents: 100 }],
        },
      };
      await queue.add(PLACE_ORDER_JOB, data, { ...commandJobOptions(config.workers.orders), jobId: orderId });
    }
    // Every order fails more often than it has attempts while PostgreSQL is down.
    const snoozed = () => logs.filter((l) => l.msg === 'delivery snoozed; no attempt consumed');
    await eventually(() => ids.every((id) => snoozed().filter((l) => l.jobId === id).length >= 3), {
      timeoutMs: 60_000,
      what: 'each order to meet the outage three times',
    });
    await postgres.start();

    await eventually(
      async () => (await pool.query('SELECT count(*)::int AS n FROM orders')).rows[0]?.n === ids.length,
      { timeoutMs: 60_000, what: 'every order decided after the outage' },
    );
    const decided = (
      await pool.query<{ status: string; attempts: number }>('SELECT status, attempts FROM orders')
    ).rows;
    expect(decided.every((o) => o.status === 'completed' && o.attempts === 1)).toBe(true);
    expect((await pool.query('SELECT id FROM dead_letters')).rows).toEqual([]);
    await eventually(async () => (await queue.getCompletedCount()) === ids.length, {
      what: 'every job completed',
    });
    expect(await queue.getFailedCount()).toBe(0);
    expect(logs.some((l) => l.msg === 'delivery failed; will retry')).toBe(false);
    // What the worker met was the outage itself, as the pg driver reports it (refused connections).
    const codes = new Set(snoozed().map((l) => (l.err as { code?: unknown } | undefined)?.code));
    expect(codes.has('ECONNREFUSED')).toBe(true);
  },
);
