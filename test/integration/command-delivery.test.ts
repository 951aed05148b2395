import { randomUUID } from 'node:crypto';
import { Writable } from 'node:stream';
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { afterEach, describe, expect, it } from 'vitest';
import type { Command, CommandHandler } from '../../shared/modules/module.ts';
import type { OrderJob } from '../../modules/orders/domain.ts';
import {
  createOrdersQueue,
  OrdersQueues,
  PLACE_ORDER_JOB,
  type OrdersQueue,
} from '../../modules/orders/queue.ts';
import { RefundJobSchema, type RefundJob } from '../../modules/refunds/domain.ts';
import { refundsModule } from '../../modules/refunds/module.ts';
import { refundsWorker } from '../../modules/refunds/worker/index.ts';
import { moduleSettings } from '../../shared/modules/settings.ts';
import type { Settled } from '../../shared/batch.ts';
import type { Config } from '../../shared/config/config.ts';
import { createDeadLetterActions } from '../../shared/dead-letters/actions.ts';
import { createRuntimeRedriver } from '../../shared/dead-letters/runtime-redriver.ts';
import type { Pool } from '../../shared/db/pool.ts';
import { CancelDelivery } from '../../shared/delivery/outcome.ts';
import { createLogger } from '../../shared/observability/logger.ts';
import { commandJobOptions, createCommandQueue } from '../../shared/queue/command-queue.ts';
import { attemptsMadeOf } from '../../shared/queue/job-delivery.ts';
import { commandQueues } from '../../shared/queue/names.ts';
import { createJobLookup } from '../../dashboard/jobs.ts';
import { commandDeadLetterId } from '../../workers/commands/dead-letter.ts';
import { createCommandWorker, type CommandWorker } from '../../workers/commands/worker.ts';
import { createOrderWorker } from '../support/order-worker.ts';
import { eventually, migratedPool, testConfig, testLogger } from '../support/env.ts';
import { cleanup } from '../support/platform.ts';
import { MODULES } from '../../modules/registry.ts';

// The command worker as a user of the delivery core (issue #19), on real Redis and PostgreSQL: the
// core decides attempts, snoozes, the last attempt and the dead letter; BullMQ only holds the job. A
// dead-lettered, cancelled or done job COMPLETES; nothing ever sits in `failed`.

type Log = Record<string, unknown>;

interface Rig {
  config: Config;
  pool: Pool;
  redis: Redis;
  queue: OrdersQueue;
  worker: CommandWorker;
  logs: Log[];
  /** Calls of the real handler's `handleBatch` per order id (also those the fault answered). */
  calls: Map<string, number>;
}

const closers: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const close of closers.splice(0).reverse()) await close();
});

function capturingLogger() {
  const logs: Log[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const line of chunk.toString('utf8').split('\n').filter(Boolean))
        logs.push(JSON.parse(line) as Log);
      done();
    },
  });
  return { logs, logger: createLogger({ level: 'info', service: 'test', destination: sink }) };
}

/**
 * A fault in front of the real order handler: `fault(orderId, call)` (call = 1, 2, … for that order)
 * returns the error its command fails with — `'batch'` rejects the whole batch with it (as a failed
 * transaction does), otherwise the item alone fails — or undefined to let the real handler decide it.
 */
type Fault = (orderId: string, call: number) => { error: Error; whole?: boolean } | undefined;

function faulty(calls: Map<string, number>, fault: Fault) {
  return (inner: CommandHandler): CommandHandler => ({
    ...inner,
    async handleBatch(commands: readonly Command[]): Promise<Settled<unknown>[]> {
      const faults = commands.map((c) => {
        const orderId = (c.job as OrderJob).orderId;
        const call = (calls.get(orderId) ?? 0) + 1;
        calls.set(orderId, call);
        return fault(orderId, call);
      });
      const whole = faults.find((f) => f?.whole);
      if (whole) throw whole.error;
      const rest = commands.filter((_, i) => !faults[i]);
      const decided = rest.length > 0 ? await inner.handleBatch(rest) : [];
      let next = 0;
      return commands.map((_, i) => {
        const f = faults[i];
        return f ? { ok: false, error: f.error } : decided[next++]!;
      });
    },
  });
}

async function startRig(env: Record<string, string>, fault: Fault = () => undefined): Promise<Rig> {
  const config = testConfig({ ORDERS_BACKOFF_MS: '20', ORDERS_BACKOFF_MAX_MS: '100', ...env });
  const pool = await migratedPool(config);
  const redis = new Redis(config.redis.url, { maxRetriesPerRequest: null });
  const queue = createOrdersQueue(redis, config.redis.queuePrefix);
  const { logs, logger } = capturingLogger();
  const calls = new Map<string, number>();
  const worker = createOrderWorker(
    { pool, logger, wrap: faulty(calls, fault) },
    {
      redisUrl: config.redis.url,
      queuePrefix: config.redis.queuePrefix,
      ...config.workers.orders,
      snoozeMs: 20,
      snoozeMaxMs: 100,
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
  return { config, pool, redis, queue, worker, logs, calls };
}

/** Enqueues an order command as the API does; `delayMs`: held back that long (then `promote()` it). */
async function placeOrder(r: Rig, delayMs?: number): Promise<string> {
  const orderId = randomUUID();
  const data: OrderJob = {
    orderId,
    correlationId: `cd-${orderId}`,
    acceptedAt: new Date().toISOString(),
    order: {
      customerId: 'c-delivery',
      currency: 'EUR',
      items: [{ sku: 'a', quantity: 1, unitPriceCents: 100 }],
    },
  };
  await r.queue.add(PLACE_ORDER_JOB, data, {
    ...commandJobOptions(r.config.workers.orders),
    jobId: orderId,
    ...(delayMs ? { delay: delayMs } : {}),
  });
  return orderId;
}

const rows = async <T extends Record<string, unknown>>(
  r: { pool: Pool },
  sql: string,
  params: unknown[] = [],
) => (await r.pool.query<T>(sql, params)).rows;

async function completed(r: Rig, jobId: string): Promise<unknown> {
  await eventually(async () => (await r.queue.getJobState(jobId)) === 'completed', {
    what: `job ${jobId} to complete`,
  });
  return (await r.queue.getJob(jobId))?.returnvalue;
}

const outage = (code: string, message: string) => Object.assign(new Error(message), { code });

describe('the command worker on the delivery core', () => {
  it('a PostgreSQL outage consumes no attempt: 10 outage failures with ORDERS_ATTEMPTS=3 end completed on attempt 1', async () => {
    // Five whole-batch failures as PostgreSQL restarts (57P03), then five refused connections for the
    // item alone: the batcher and runWithIsolation must hand the errors on with their codes.
    const r = await startRig({ ORDERS_ATTEMPTS: '3' }, (_id, call) =>
      call <= 5
        ? { error: outage('57P03', 'the database system is starting up'), whole: true }
        : call <= 10
          ? { error: outage('ECONNREFUSED', 'connect ECONNREFUSED 127.0.0.1:5432') }
          : undefined,
    );
    const orderId = await placeOrder(r);
    expect(await completed(r, orderId)).toMatchObject({ status: 'completed', orderId });
    expect(r.calls.get(orderId)).toBe(11);
    expect(await rows(r, 'SELECT status, attempts FROM orders WHERE order_id = $1', [orderId])).toEqual([
      { status: 'completed', attempts: 1 },
    ]);
    expect(await rows(r, 'SELECT id FROM dead_letters')).toEqual([]);
    expect(await r.queue.getFailedCount()).toBe(0);
    const snoozed = r.logs.filter((l) => l.msg === 'delivery snoozed; no attempt consumed');
    expect(snoozed).toHaveLength(10);
    expect(snoozed.every((l) => l.attempt === 1)).toBe(true);
    expect(r.logs.some((l) => l.msg === 'delivery failed; will retry')).toBe(false);
  });

  it('the last attempt makes exactly one dead letter, with the module state and event, and the job completes', async () => {
    const r = await startRig({ ORDERS_ATTEMPTS: '3' }, (_id, call) => ({
      error: new Error(`boom #${call}`),
    }));
    const orderId = await placeOrder(r);
    const id = commandDeadLetterId(OrdersQueues.commands, orderId);
    expect(id).toBe(`bullmq-orders-${orderId}`);
    expect(await completed(r, orderId)).toEqual({ deadLetterId: id });
    expect(r.calls.get(orderId)).toBe(3);
    expect(await rows(r, 'SELECT id, error, attempts, subject_id, kind, status FROM dead_letters')).toEqual([
      { id, error: 'boom #3', attempts: 3, subject_id: orderId, kind: 'command', status: 'pending' },
    ]);
    expect(await rows(r, 'SELECT status, attempts FROM orders WHERE order_id = $1', [orderId])).toEqual([
      { status: 'dead_lettered', attempts: 3 },
    ]);
    expect(await rows(r, `SELECT aggregate_id FROM outbox WHERE event_type = 'order.dead_lettered'`)).toEqual(
      [{ aggregate_id: orderId }],
    );
    expect(await r.queue.getFailedCount()).toBe(0);
    expect(r.logs.filter((l) => l.msg === 'delivery failed; will retry')).toHaveLength(2);
    const dlq = new Queue(OrdersQueues.deadLetters, {
      connection: r.redis,
      prefix: r.config.redis.queuePrefix,
    });
    closers.push(() => dlq.close());
    expect((await dlq.getJob(id))?.data).toMatchObject({ deadLetterId: id, jobId: orderId, attempts: 3 });

    // Each hand-back carried the count in the job's progress (one script); BullMQ's own count saw only
    // the completion. The API and the console show ours.
    const job = await r.queue.getJob(orderId);
    expect(job?.progress).toEqual({ attempt: 3, snoozes: 0, lastError: 'boom #2' });
    expect(job?.attemptsMade).toBe(1);
    expect(attemptsMadeOf(job!)).toBe(3);
    expect(await createJobLookup([r.queue as Queue]).get(OrdersQueues.commands, orderId)).toMatchObject({
      state: 'completed',
      attemptsMade: 3,
      attempt: 3,
      snoozes: 0,
      attempts: 3,
    });
  });

  it('reads the jobs the previous release left: BullMQ-counted retries, and a dead letter it sent back', async () => {
    const r = await startRig({ ORDERS_ATTEMPTS: '3' }, (_id, call) => ({
      error: new Error(`boom #${call}`),
    }));
    // Held back until their hashes look as that release left them, then released.
    const held = async (progress?: object) => {
      const orderId = await placeOrder(r, 60_000);
      const job = (await r.queue.getJob(orderId))!;
      // It let BullMQ retry: two attempts failed, counted in `attemptsMade` alone.
      await (await r.queue.client).hset(r.queue.toKey(orderId), 'atm', '2');
      if (progress) await job.updateProgress(progress);
      return { orderId, release: () => job.promote() };
    };
    const retried = await held();
    // BullMQ failed it for good, its dead letter was not recorded: sent back with `{ deadLetter }`.
    const pending = await held({
      deadLetter: { error: 'job stalled more than allowable limit', stack: null, attempts: 2 },
    });
    await retried.release();
    await pending.release();

    for (const { orderId } of [retried, pending])
      expect(await completed(r, orderId)).toEqual({
        deadLetterId: commandDeadLetterId(OrdersQueues.commands, orderId),
      });
    // The retried one is on its third and last attempt: tried once, then dead-lettered.
    expect(r.calls.get(retried.orderId)).toBe(1);
    // The pending dead letter is recorded as it was, without running the command again.
    expect(r.calls.get(pending.orderId)).toBeUndefined();
    expect(
      await rows(r, 'SELECT subject_id, attempts, error FROM dead_letters ORDER BY attempts DESC'),
    ).toEqual([
      { subject_id: retried.orderId, attempts: 3, error: 'boom #1' },
      { subject_id: pending.orderId, attempts: 2, error: 'job stalled more than allowable limit' },
    ]);
    expect(await r.queue.getFailedCount()).toBe(0);
  });

  it('a cancelled command completes without effect, never retried and never a dead letter', async () => {
    const r = await startRig({ ORDERS_ATTEMPTS: '3' }, () => ({ error: new CancelDelivery('superseded') }));
    const orderId = await placeOrder(r);
    expect(await completed(r, orderId)).toEqual({ cancelled: 'superseded' });
    expect(r.calls.get(orderId)).toBe(1);
    expect(await rows(r, 'SELECT id FROM dead_letters')).toEqual([]);
    expect(await rows(r, 'SELECT order_id FROM orders')).toEqual([]);
  });

  it('a dead letter that cannot be recorded parks the job (delayed, same attempt), then is recorded once', async () => {
    const r = await startRig({ ORDERS_ATTEMPTS: '2' }, (_id, call) => ({
      error: new Error(`boom #${call}`),
    }));
    await r.pool.query('ALTER TABLE dead_letters RENAME TO dead_letters_unavailable');
    const orderId = await placeOrder(r);
    const parked = () =>
      r.logs.filter((l) => l.msg === 'dead letter not recorded; message parked, no attempt consumed');
    await eventually(() => parked().length >= 2, { what: 'the dead letter to fail to record, twice' });
    // Held while parked (delayed), so the table comes back between two tries, not inside one (where
    // the full record could fail on the missing table and its fallback find it back: recorded alone).
    const job = (await r.queue.getJob(orderId))!;
    await eventually(
      () =>
        job.changeDelay(60_000).then(
          () => true,
          () => false,
        ),
      {
        what: 'the job parked, held there',
      },
    );
    expect(await r.queue.getFailedCount()).toBe(0);
    // Parked on its last attempt, the count in its progress: each redelivery is tried once more,
    // never counted past it.
    const progress = (await r.queue.getJob(orderId))?.progress as { attempt: number; snoozes: number };
    expect(progress.attempt).toBe(2);
    expect(progress.snoozes).toBeGreaterThanOrEqual(2);
    expect(
      parked().every((l) => l.deadLetterId === commandDeadLetterId(OrdersQueues.commands, orderId)),
    ).toBe(true);
    expect(r.logs.filter((l) => l.msg === 'delivery failed; will retry')).toHaveLength(1);

    await r.pool.query('ALTER TABLE dead_letters_unavailable RENAME TO dead_letters');
    await job.promote();
    const id = commandDeadLetterId(OrdersQueues.commands, orderId);
    expect(await completed(r, orderId)).toEqual({ deadLetterId: id });
    const [dead] = await rows<{ id: string; attempts: number; error: string }>(
      r,
      'SELECT id, attempts, error FROM dead_letters',
    );
    expect(dead).toMatchObject({ id, attempts: 2 });
    expect(dead!.error).toMatch(/^boom #\d+$/);
    expect(await rows(r, 'SELECT count(*)::int AS n FROM dead_letters')).toEqual([{ n: 1 }]);
    expect(
      await rows(r, `SELECT count(*)::int AS n FROM outbox WHERE event_type = 'order.dead_lettered'`),
    ).toEqual([{ n: 1 }]);
    expect(await r.queue.getFailedCount()).toBe(0);
    expect(r.logs.filter((l) => l.msg === 'moved to dead letters')).toHaveLength(1);
  });

  it('a dead letter whose full record PostgreSQL refuses is recorded alone; the job completes', async () => {
    // The module's write model refuses every write (its table is gone: 42P01, not an outage), so
    // every attempt fails and so does the module's part of the dead-letter transaction.
    const r = await startRig({ ORDERS_ATTEMPTS: '2' });
    await r.pool.query('ALTER TABLE orders RENAME TO orders_unavailable');
    const orderId = await placeOrder(r);
    const id = commandDeadLetterId(OrdersQueues.commands, orderId);
    expect(await completed(r, orderId)).toEqual({ deadLetterId: id });
    const [dead] = await rows<{ id: string; attempts: number; error: string }>(
      r,
      'SELECT id, attempts, error FROM dead_letters',
    );
    expect(dead).toMatchObject({ id, attempts: 2 });
    expect(dead!.error).toMatch(
      /orders.*does not exist \(dead letter recorded alone: .*orders.*does not exist\)/,
    );
    expect(r.logs.some((l) => l.msg === 'dead letter recorded alone: its full record was refused')).toBe(
      true,
    );
    expect(
      r.logs.some((l) => l.msg === 'dead letter not recorded; message parked, no attempt consumed'),
    ).toBe(false);
    expect(await r.queue.getFailedCount()).toBe(0);
    expect(await r.queue.getDelayedCount()).toBe(0);
  });

  it('a redriven command that fails again keeps its dead-letter id, with the new error', async () => {
    const r = await startRig({ ORDERS_ATTEMPTS: '2' }, (_id, call) => ({
      error: new Error(`boom #${call}`),
    }));
    const orderId = await placeOrder(r);
    const id = commandDeadLetterId(OrdersQueues.commands, orderId);
    expect(await completed(r, orderId)).toEqual({ deadLetterId: id });
    expect(
      await rows(r, 'SELECT error, status, redrive_count FROM dead_letters WHERE id = $1', [id]),
    ).toEqual([{ error: 'boom #2', status: 'pending', redrive_count: 0 }]);

    // The operators' redrive, as the API and the console run it: same job id, fresh attempts.
    const redriver = createRuntimeRedriver({
      config: r.config,
      logger: testLogger(),
      pool: r.pool,
      redis: r.redis,
      modules: MODULES,
    });
    closers.push(() => redriver.close());
    const actions = createDeadLetterActions({
      pool: r.pool,
      redis: r.redis,
      queuePrefix: r.config.redis.queuePrefix,
      redrive: redriver.redrive,
      modules: MODULES,
    });
    const who = { actor: 'test', role: 'admin', source: 'api', ip: null, userAgent: null } as const;
    expect(await actions.redrive(id, who)).toEqual({ id, status: 'redriven' });

    await eventually(async () => r.calls.get(orderId) === 4, {
      what: 'the redriven command to fail twice more',
    });
    await eventually(
      async () =>
        (await rows<{ error: string }>(r, 'SELECT error FROM dead_letters WHERE id = $1', [id]))[0]?.error ===
        'boom #4',
      { what: 'the dead letter to carry the new error' },
    );
    expect(await rows(r, 'SELECT id, status, redrive_count, attempts FROM dead_letters')).toEqual([
      { id, status: 'pending', redrive_count: 1, attempts: 2 },
    ]);
    expect(await completed(r, orderId)).toEqual({ deadLetterId: id });
    expect(await r.queue.getFailedCount()).toBe(0);
  });
});

describe('a refund PostgreSQL can never store', () => {
  it('ends as exactly one dead letter, its job completed, nothing parked forever', async () => {
    const config = testConfig({
      REFUNDS_ATTEMPTS: '3',
      REFUNDS_BACKOFF_MS: '20',
      REFUNDS_BACKOFF_MAX_MS: '100',
    });
    const pool = await migratedPool(config);
    const redis = new Redis(config.redis.url, { maxRetriesPerRequest: null });
    const names = commandQueues(refundsModule.name);
    const queue = createCommandQueue<RefundJob>(redis, config.redis.queuePrefix, names.commands);
    closers.push(async () => {
      await queue.close();
      redis.disconnect();
      await pool.end();
      await cleanup(config);
    });
    const { logs, logger } = capturingLogger();
    const settings = moduleSettings(config, refundsModule.name);
    const ctx = { pool, logger, config, settings, onOutboxAppended: () => undefined };
    const worker = createCommandWorker(
      { pool, logger, module: refundsModule, handler: refundsWorker.commands(ctx) },
      {
        redisUrl: config.redis.url,
        queuePrefix: config.redis.queuePrefix,
        ...settings,
        snoozeMs: 20,
        snoozeMaxMs: 100,
        shutdownGraceMs: 5_000,
      },
    );
    closers.push(() => worker.close());
    const refund = (reason: string): RefundJob => ({
      refundId: randomUUID(),
      orderId: randomUUID(),
      correlationId: `nul-${randomUUID()}`,
      requestedAt: new Date().toISOString(),
      refund: { amountCents: 100, reason },
    });
    // Straight onto the queue, as a foreign producer would (the API refuses NUL at its edge).
    const poisoned = refund('\u0000');
    const control = refund('damaged'); // the same refund without the NUL: rejected (no such order), stored
    for (const data of [poisoned, control])
      await queue.add(refundsModule.jobName, data, { ...commandJobOptions(settings), jobId: data.refundId });

    const id = commandDeadLetterId(names.commands, poisoned.refundId);
    await eventually(async () => (await queue.getJobState(poisoned.refundId)) === 'completed', {
      what: 'the NUL refund job to complete',
    });
    expect((await queue.getJob(poisoned.refundId))?.returnvalue).toEqual({ deadLetterId: id });
    const dead = (await pool.query('SELECT id, subject_id, kind, status FROM dead_letters')).rows;
    expect(dead).toEqual([{ id, subject_id: poisoned.orderId, kind: 'command', status: 'pending' }]);
    expect(await queue.getFailedCount()).toBe(0);
    expect(await queue.getDelayedCount()).toBe(0);
    expect(logs.some((l) => l.msg === 'dead letter not recorded; message parked, no attempt consumed')).toBe(
      false,
    );
    const [row] = (
      await pool.query<{ error: string; attempts: number }>('SELECT error, attempts FROM dead_letters')
    ).rows;
    if (RefundJobSchema.safeParse(poisoned).success) {
      // A job schema that lets NUL through: PostgreSQL refuses it (22021) on every attempt and in the
      // module's dead-letter write, so the dead letter is recorded alone, made storable.
      expect(logs.some((l) => l.msg === 'dead letter recorded alone: its full record was refused')).toBe(
        true,
      );
      expect(row).toMatchObject({ attempts: 3, error: expect.stringMatching(/0x00.*recorded alone/s) });
    } else {
      // The job schema (the API's edge check) refuses NUL: invalid at once, dead-lettered on attempt 1.
      expect(row).toMatchObject({
        attempts: 1,
        error: expect.stringMatching(/^invalid command for queue refunds/),
      });
    }
    await eventually(async () => (await queue.getJobState(control.refundId)) === 'completed', {
      what: 'the control refund to complete',
    });
    expect(
      (await pool.query('SELECT status FROM refunds WHERE refund_id = $1', [control.refundId])).rows,
    ).toEqual([{ status: 'rejected' }]);
  });
});
