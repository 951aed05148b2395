import { randomUUID } from 'node:crypto';
import { Writable } from 'node:stream';
import { Redis } from 'ioredis';
import { afterEach, expect, it } from 'vitest';
import type { CommandHandler } from '../../shared/modules/module.ts';
import type { OrderJob } from '../../modules/orders/domain.ts';
import { createOrdersQueue, PLACE_ORDER_JOB, type OrdersQueue } from '../../modules/orders/queue.ts';
import type { Config } from '../../shared/config/config.ts';
import type { Pool } from '../../shared/db/pool.ts';
import { createLogger } from '../../shared/observability/logger.ts';
import { commandJobOptions } from '../../shared/queue/command-queue.ts';
import { eventually, migratedPool, testConfig } from '../support/env.ts';
import { createOrderWorker, type OrderWorker } from '../support/order-worker.ts';
import { cleanup } from '../support/platform.ts';

// A worker whose event loop is starved (a loaded machine) past its job's lock is not a worker that
// crashed: its delivery still ends — here in a snooze, PostgreSQL being down — but BullMQ's stalled
// check has meanwhile counted a stall against the job, and that count (`stc`) never went down. Over
// the snoozes of an outage a job collected stalls from starved deliveries until BullMQ failed it by
// itself ("job stalled more than allowable limit") and it was dead-lettered: an order lost to load,
// through no fault of its own (the PostgreSQL-outage chaos test on a loaded machine: 6 to 89 orders
// per bus). A delivery that comes back proves the job does not crash its worker: the count is
// cleared (shared/queue/job-delivery.ts), so only deliveries that never come back fail a job.

const LOCK_MS = 1_000;
/** Longer than the lock: the lock expires while the loop is blocked, and the stalled check takes the job back. */
const STARVE_MS = 2_500;
/** Starved deliveries: more than `maxStalledCount` (1). */
const STARVED = 3;

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

/** What pg says when the server is gone: an outage, which the core snoozes. */
const outage = () =>
  Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:5432'), { code: 'ECONNREFUSED' });

/** Blocks the event loop, as a starved process does: no timer (lock renewal) runs meanwhile. */
function starve(ms: number): void {
  const until = Date.now() + ms;
  while (Date.now() < until) {
    /* busy */
  }
}

/**
 * One order through the real order worker (`maxStalledCount` 1, 1 s lock): its first deliveries meet
 * PostgreSQL down, and those `starved(n)` says block the event loop past the lock first; then the
 * real handler decides it. Resolves to how it was decided, the dead letters and the stalls seen.
 */
async function scenario(
  outageDeliveries: number,
  starved: (delivery: number) => boolean,
): Promise<{
  decided: { status: string; attempts: number };
  deadLetters: { error: string }[];
  stalls: number;
  snoozes: number;
}> {
  config = testConfig({ ORDERS_BACKOFF_MS: '50', ORDERS_BACKOFF_MAX_MS: '200' });
  pool = await migratedPool(config);
  redis = new Redis(config.redis.url, { maxRetriesPerRequest: null });
  queue = createOrdersQueue(redis, config.redis.queuePrefix);
  const orderId = randomUUID();
  const data: OrderJob = {
    orderId,
    correlationId: `starved-${orderId}`,
    acceptedAt: new Date().toISOString(),
    order: {
      customerId: 'c-starved',
      currency: 'EUR',
      items: [{ sku: 'a', quantity: 1, unitPriceCents: 100 }],
    },
  };
  await queue.add(PLACE_ORDER_JOB, data, { ...commandJobOptions(config.workers.orders), jobId: orderId });

  let deliveries = 0;
  const wrap = (handler: CommandHandler): CommandHandler => ({
    ...handler,
    async handleBatch(commands) {
      deliveries++;
      if (deliveries > outageDeliveries) return handler.handleBatch(commands);
      if (starved(deliveries)) starve(STARVE_MS);
      throw outage();
    },
  });
  const { logs, logger } = capturingLogger();
  worker = createOrderWorker(
    { pool, logger, wrap },
    {
      redisUrl: config.redis.url,
      queuePrefix: config.redis.queuePrefix,
      ...config.workers.orders,
      shutdownGraceMs: 5_000,
      maxStalledCount: 1,
      lockDurationMs: LOCK_MS,
      stalledIntervalMs: 300,
    },
  );
  let stalls = 0;
  worker.worker.on('stalled', (id) => {
    if (id === orderId) stalls++;
  });

  // Decided either way: by the handler, or as a dead letter (BullMQ failed the job by itself).
  const decided = await eventually(
    async () =>
      (
        await pool!.query<{ status: string; attempts: number }>(
          'SELECT status, attempts FROM orders WHERE order_id = $1',
          [orderId],
        )
      ).rows[0],
    { what: 'the order to be decided', timeoutMs: 60_000, intervalMs: 100 },
  );
  const deadLetters = (await pool.query<{ error: string }>('SELECT error FROM dead_letters')).rows;
  const snoozes = logs.filter((l) => l.msg === 'delivery snoozed; no attempt consumed').length;
  return { decided, deadLetters, stalls, snoozes };
}

it('does not dead-letter a job whose stalls came from starved deliveries between snoozes', async () => {
  // Deliveries 1, 3, 5: the loop starved past the lock, then PostgreSQL down (the hand-back finds its
  // lock gone; the stalled check takes the job back). 2, 4, 6: PostgreSQL down, snoozed at once.
  const { decided, deadLetters, stalls, snoozes } = await scenario(2 * STARVED, (n) => n % 2 === 1);
  // Decided by the handler, on its first attempt (snoozes and stalls gave theirs back); no dead letter.
  expect({ decided, deadLetters }).toEqual({
    decided: { status: 'completed', attempts: 1 },
    deadLetters: [],
  });
  // The scenario happened: every starved delivery was taken back as stalled, the others snoozed.
  expect(stalls).toBe(STARVED);
  expect(snoozes).toBeGreaterThanOrEqual(STARVED);
}, 90_000);

it('does not dead-letter a job whose live worker was starved past its lock delivery after delivery', async () => {
  // Deliveries 1–3 all starved past the lock, in a row: each still came back (its hand-back refused,
  // the lock gone), so none was a crash — more stalls in a row than `maxStalledCount` allows.
  const { decided, deadLetters, stalls } = await scenario(STARVED, () => true);
  expect({ decided, deadLetters }).toEqual({
    decided: { status: 'completed', attempts: 1 },
    deadLetters: [],
  });
  expect(stalls).toBe(STARVED);
}, 90_000);
