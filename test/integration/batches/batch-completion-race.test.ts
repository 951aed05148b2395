import { randomUUID } from 'node:crypto';
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { OrderJob } from '../../../modules/orders/domain.ts';
import { createOrderHandler, type OrderCommand } from '../../../modules/orders/worker/handler.ts';
import { orderDeadLettered } from '../../../modules/orders/worker/dead-letter.ts';
import { OrdersQueues, PLACE_ORDER_JOB } from '../../../modules/orders/queue.ts';
import { openBatch } from '../../../shared/batches/store.ts';
import type { Config } from '../../../shared/config/config.ts';
import { createPool, withTransaction, type Pool } from '../../../shared/db/pool.ts';
import { eventually, migratedPool, testConfig, testLogger } from '../../support/env.ts';
import { createOrderWorker, type OrderWorker } from '../../support/order-worker.ts';
import { cleanup } from '../../support/platform.ts';

// Issue #22: `batch.completed` is appended exactly once per batch, in the transaction that decides its
// last item — even when the last items are decided at the same time by two workers' micro-batches
// (separate connections), when decided items are redelivered meanwhile, when the API records the
// batch's total while the workers decide it, and when a dead-lettered item is decided after a redrive.

let config: Config;
let pool: Pool;
let other: Pool;

beforeAll(async () => {
  config = testConfig({ SUPPORTED_CURRENCIES: 'EUR' });
  pool = await migratedPool(config);
  other = createPool({ ...config.database, poolMax: 5 });
});
afterAll(async () => {
  await other?.end();
  await pool?.end();
  await cleanup(config);
});

function job(batchId: string, currency = 'EUR'): OrderJob {
  const orderId = randomUUID();
  return {
    orderId,
    correlationId: `race-${orderId}`,
    acceptedAt: new Date().toISOString(),
    acceptedBy: 'shop',
    tenant: 'shop',
    batchId,
    order: { customerId: 'c-race', currency, items: [{ sku: 'a', quantity: 1, unitPriceCents: 100 }] },
  };
}
const cmd = (j: OrderJob): OrderCommand => ({ job: j, attempt: 1 });
const open = (batchId: string, accepted: number) =>
  openBatch(pool, {
    batchId,
    module: 'orders',
    accepted,
    tenant: 'shop',
    acceptedBy: 'shop',
    correlationId: `batch-${batchId}`,
  });

async function state(batchId: string) {
  const row = (
    await pool.query<{ completed: number; rejected: number; dead_lettered: number; done: boolean }>(
      'SELECT completed, rejected, dead_lettered, completed_at IS NOT NULL AS done FROM batches WHERE batch_id = $1',
      [batchId],
    )
  ).rows[0];
  const events = await pool.query<{ envelope: { payload: Record<string, unknown> } }>(
    `SELECT envelope FROM outbox WHERE event_type = 'batch.completed' AND aggregate_id = $1`,
    [batchId],
  );
  return { row, events: events.rows.map((r) => r.envelope.payload) };
}

describe('batch.completed exactly once', () => {
  it('when two micro-batches decide the last items at once, with redeliveries and the API racing', async () => {
    // Two workers: each its own handler and its own connections.
    const a = createOrderHandler({ pool, supportedCurrencies: ['EUR'] });
    const b = createOrderHandler({ pool: other, supportedCurrencies: ['EUR'] });
    for (let round = 0; round < 24; round += 1) {
      const batchId = randomUUID();
      const jobs = [...Array.from({ length: 5 }, () => job(batchId)), job(batchId, 'USD')];
      const [j0, j1, j2, j3, j4, j5] = jobs.map(cmd) as [OrderCommand, ...OrderCommand[]];
      if (round % 2 === 0) {
        // The API recorded the batch first; two items decided earlier, the last four at once (and
        // redelivered at once: the same items in the other worker, a decided one again).
        await open(batchId, 6);
        await a.handleBatch([j0, j1!]);
        await Promise.all([
          a.handleBatch([j2!, j3!]),
          b.handleBatch([j4!, j5!]),
          b.handleBatch([j2!, j3!]),
          a.handleBatch([j4!]),
          b.handleBatch([j0]),
        ]);
      } else {
        // The workers decide while the API records the total (its addBulk returned, its insert is late).
        await Promise.all([
          a.handleBatch([j0, j1!, j2!]),
          b.handleBatch([j3!, j4!, j5!]),
          open(batchId, 6),
          a.handleBatch([j3!, j5!]),
        ]);
      }
      const { row, events } = await state(batchId);
      expect(row).toEqual({ completed: 5, rejected: 1, dead_lettered: 0, done: true });
      expect(events).toHaveLength(1);
      expect(events[0]).toMatchObject({ batchId, total: 6, completed: 5, rejected: 1, deadLettered: 0 });
    }
  });

  it('does not complete again when a dead-lettered item is decided after a redrive', async () => {
    const handler = createOrderHandler({ pool, supportedCurrencies: ['EUR'] });
    const batchId = randomUUID();
    const [poisoned, fine] = [job(batchId), job(batchId)];
    await open(batchId, 2);
    await handler.handleBatch([cmd(fine)]);
    const deadLetter = () =>
      withTransaction(pool, (client) =>
        orderDeadLettered(client, {
          data: poisoned,
          error: new Error('payment kept failing'),
          attempts: 3,
          deadLetterId: `bullmq-orders-${poisoned.orderId}`,
          correlationId: poisoned.correlationId,
          at: new Date(),
        }),
      );
    await deadLetter();
    await deadLetter(); // the dead letter recorded again: counted once
    let { row, events } = await state(batchId);
    expect(row).toEqual({ completed: 1, rejected: 0, dead_lettered: 1, done: true });
    expect(events).toHaveLength(1);

    // Redriven and decided: the counts move from dead-lettered to completed, no second completion.
    await handler.handleBatch([cmd(poisoned)]);
    ({ row, events } = await state(batchId));
    expect(row).toEqual({ completed: 2, rejected: 0, dead_lettered: 0, done: true });
    expect(events).toHaveLength(1);
  });

  it('through two real workers deciding concurrent micro-batches with every job delivered twice', async () => {
    const redis = new Redis(config.redis.url, { maxRetriesPerRequest: null });
    const queue = new Queue(OrdersQueues.commands, { connection: redis, prefix: config.redis.queuePrefix });
    const workers: OrderWorker[] = [pool, other].map((p) =>
      createOrderWorker(
        { pool: p, logger: testLogger() },
        {
          redisUrl: config.redis.url,
          queuePrefix: config.redis.queuePrefix,
          ...config.workers.orders,
          concurrency: 8,
          batchSize: 4,
          batchWaitMs: 5,
          shutdownGraceMs: 5_000,
        },
      ),
    );
    try {
      const batches = Array.from({ length: 10 }, () => randomUUID());
      const jobs = batches.flatMap((id) =>
        Array.from({ length: 8 }, (_, i) => job(id, i === 7 ? 'USD' : 'EUR')),
      );
      // Each job twice (a redelivery under another job id), interleaved, while the API records the totals.
      await Promise.all([
        queue.addBulk(
          jobs.flatMap((j) => [
            { name: PLACE_ORDER_JOB, data: j, opts: { jobId: j.orderId } },
            { name: PLACE_ORDER_JOB, data: j, opts: { jobId: `${j.orderId}-again` } },
          ]),
        ),
        ...batches.map((id) => open(id, 8)),
      ]);
      await eventually(
        async () => {
          const counts = await queue.getJobCounts('waiting', 'active', 'delayed', 'prioritized');
          return Object.values(counts).every((n) => n === 0);
        },
        { what: 'every job processed', timeoutMs: 20_000 },
      );
      for (const id of batches) {
        const { row, events } = await state(id);
        expect(row).toEqual({ completed: 7, rejected: 1, dead_lettered: 0, done: true });
        expect(events).toHaveLength(1);
      }
    } finally {
      await Promise.all(workers.map((w) => w.close()));
      await queue.close();
      redis.disconnect();
    }
  });
});
