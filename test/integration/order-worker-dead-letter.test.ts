import { OrdersQueues } from '../../modules/orders/queue.ts';
import { randomUUID } from 'node:crypto';
import { Writable } from 'node:stream';
import { Queue, Worker } from 'bullmq';
import { Redis } from 'ioredis';
import { afterEach, expect, it } from 'vitest';
import type { Config } from '../../shared/config/config.ts';
import type { Pool } from '../../shared/db/pool.ts';
import type { OrderJob } from '../../modules/orders/domain.ts';
import { createLogger } from '../../shared/observability/logger.ts';
import { createOrdersQueue, PLACE_ORDER_JOB, type OrdersQueue } from '../../modules/orders/queue.ts';
import { commandJobOptions } from '../../shared/queue/command-queue.ts';
import { commandDeadLetterId } from '../../workers/commands/dead-letter.ts';
import { createOrderWorker, type OrderWorker } from '../support/order-worker.ts';
import { eventually, migratedPool, testConfig } from '../support/env.ts';
import { cleanup } from '../support/platform.ts';

// Point 5 of issue #12, through the delivery core (#19): a job BullMQ fails by itself (here: stalled
// more often than allowed, so the processor never sees it) must reach the dead letters even when the
// first dead-letter write fails — sent back and parked, never left in `failed` where removeOnFail trims
// it — and once recorded it leaves `failed` for good. Real Redis and Postgres; the dead-letter write
// fails because the `dead_letters` table is renamed away, then restored.

let config: Config;
let pool: Pool | undefined;
let redis: Redis | undefined;
let queue: OrdersQueue | undefined;
let worker: OrderWorker | undefined;

afterEach(async () => {
  await worker?.close();
  await queue?.close();
  redis?.disconnect();
  await pool?.end();
  await cleanup(config);
  worker = queue = redis = pool = undefined;
});

function capturingLogger() {
  const logs: Record<string, unknown>[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const line of chunk.toString('utf8').split('\n').filter(Boolean))
        logs.push(JSON.parse(line) as Record<string, unknown>);
      done();
    },
  });
  return { logs, logger: createLogger({ level: 'info', service: 'test', destination: sink }) };
}

it('dead-letters a job that stalled too often once the dead-letter store is back, keeping it meanwhile', async () => {
  config = testConfig({ ORDERS_BACKOFF_MS: '50', ORDERS_BACKOFF_MAX_MS: '200' });
  pool = await migratedPool(config);
  redis = new Redis(config.redis.url, { maxRetriesPerRequest: null });
  queue = createOrdersQueue(redis, config.redis.queuePrefix);
  const prefix = config.redis.queuePrefix;
  const orderId = randomUUID();
  const data: OrderJob = {
    orderId,
    correlationId: `stall-${orderId}`,
    acceptedAt: new Date().toISOString(),
    order: {
      customerId: 'c-stall',
      currency: 'EUR',
      items: [{ sku: 'a', quantity: 1, unitPriceCents: 100 }],
    },
  };
  await queue.add(PLACE_ORDER_JOB, data, { ...commandJobOptions(config.workers.orders), jobId: orderId });

  // A worker that takes the job and dies with it: fetched by hand, its 200 ms lock never renewed.
  const crashed = new Worker(OrdersQueues.commands, null, {
    connection: redis,
    prefix,
    autorun: false,
    lockDuration: 200,
  });
  expect((await crashed.getNextJob('crashed-worker-token'))?.id).toBe(orderId);
  await crashed.close();

  await pool.query('ALTER TABLE dead_letters RENAME TO dead_letters_unavailable');
  const { logs, logger } = capturingLogger();
  worker = createOrderWorker(
    { pool, logger },
    {
      redisUrl: config.redis.url,
      queuePrefix: prefix,
      ...config.workers.orders,
      shutdownGraceMs: 5_000,
      // The first stall fails the job (BullMQ's own UnrecoverableError, no processor call).
      maxStalledCount: 0,
      lockDurationMs: 1_000,
      stalledIntervalMs: 200,
    },
  );

  // BullMQ failed it, dead-lettering failed: the job is kept — sent back, then parked (delayed) by the
  // core for another try, not left in `failed`.
  await eventually(
    () =>
      logs.some((l) => l.msg === 'dead letter of a failed job not recorded; sent back to be parked') &&
      logs.some((l) => l.msg === 'dead letter not recorded; message parked, no attempt consumed'),
    { what: 'the failed path to try dead-lettering, fail, and the job to be parked' },
  );
  await eventually(async () => (await queue!.getJobState(orderId)) === 'delayed', {
    what: 'the job parked for another dead-letter try',
  });
  expect(await queue.getFailedCount()).toBe(0);

  await pool.query('ALTER TABLE dead_letters_unavailable RENAME TO dead_letters');
  const id = commandDeadLetterId(OrdersQueues.commands, orderId);
  const dead = await eventually(
    async () =>
      (
        await pool!.query<{ error: string; subject_id: string }>(
          'SELECT error, subject_id FROM dead_letters WHERE id = $1',
          [id],
        )
      ).rows[0],
    { what: 'the dead letter recorded' },
  );
  expect(dead).toEqual({ error: 'job stalled more than allowable limit', subject_id: orderId });
  // The core's id scheme is the one the console always matched: `bullmq-<queue>-<job id>`.
  expect(id).toBe(`bullmq-orders-${orderId}`);
  // Nothing lost: the write model knows, an event tells the read model, the job COMPLETES (it was
  // dead-lettered, not dropped) and nothing is left in `failed`.
  const order = await pool.query<{ status: string }>('SELECT status FROM orders WHERE order_id = $1', [
    orderId,
  ]);
  expect(order.rows[0]?.status).toBe('dead_lettered');
  const events = await pool.query(`SELECT 1 FROM outbox WHERE event_type = 'order.dead_lettered'`);
  expect(events.rowCount).toBe(1);
  await eventually(async () => (await queue!.getJobState(orderId)) === 'completed', {
    what: 'the dead-lettered job to complete',
  });
  expect((await queue.getJob(orderId))?.returnvalue).toEqual({ deadLetterId: id });
  expect(await queue.getFailedCount()).toBe(0);
  expect((await pool.query('SELECT 1 FROM dead_letters')).rowCount).toBe(1);
});

it('removes from `failed` a stalled-out job whose dead letter was recorded at once', async () => {
  config = testConfig({ ORDERS_BACKOFF_MS: '50', ORDERS_BACKOFF_MAX_MS: '200' });
  pool = await migratedPool(config);
  redis = new Redis(config.redis.url, { maxRetriesPerRequest: null });
  queue = createOrdersQueue(redis, config.redis.queuePrefix);
  const prefix = config.redis.queuePrefix;
  const orderId = randomUUID();
  await queue.add(
    PLACE_ORDER_JOB,
    {
      orderId,
      correlationId: `stall-${orderId}`,
      acceptedAt: new Date().toISOString(),
      order: {
        customerId: 'c-stall',
        currency: 'EUR',
        items: [{ sku: 'a', quantity: 1, unitPriceCents: 100 }],
      },
    },
    { ...commandJobOptions(config.workers.orders), jobId: orderId },
  );
  const crashed = new Worker(OrdersQueues.commands, null, {
    connection: redis,
    prefix,
    autorun: false,
    lockDuration: 200,
  });
  expect((await crashed.getNextJob('crashed-worker-token'))?.id).toBe(orderId);
  await crashed.close();

  const { logs, logger } = capturingLogger();
  worker = createOrderWorker(
    { pool, logger },
    {
      redisUrl: config.redis.url,
      queuePrefix: prefix,
      ...config.workers.orders,
      shutdownGraceMs: 5_000,
      maxStalledCount: 0,
      lockDurationMs: 1_000,
      stalledIntervalMs: 200,
    },
  );
  const id = commandDeadLetterId(OrdersQueues.commands, orderId);
  await eventually(
    async () => (await pool!.query('SELECT 1 FROM dead_letters WHERE id = $1', [id])).rowCount === 1,
    {
      what: 'the dead letter recorded',
    },
  );
  await eventually(async () => (await queue!.getJob(orderId)) === undefined, {
    what: 'the job removed from failed once its dead letter is recorded',
  });
  expect(await queue.getFailedCount()).toBe(0);
  expect(logs.some((l) => l.msg === 'moved to dead letters' && l.deadLetterId === id)).toBe(true);
  // The copy for Bull Board, under the dead letter's id.
  const dlq = new Queue(OrdersQueues.deadLetters, { connection: redis, prefix });
  const copy = await dlq.getJob(id);
  await dlq.close();
  expect(copy?.data).toMatchObject({ deadLetterId: id, jobId: orderId });
});
