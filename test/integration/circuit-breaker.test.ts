import { randomUUID } from 'node:crypto';
import { Writable } from 'node:stream';
import { Redis } from 'ioredis';
import { afterEach, describe, expect, it } from 'vitest';
import type { Config } from '../../shared/config/config.ts';
import type { Pool } from '../../shared/db/pool.ts';
import type { OrderJob, PlaceOrder } from '../../modules/orders/domain.ts';
import { createLogger } from '../../shared/observability/logger.ts';
import { createOrdersQueue, PLACE_ORDER_JOB, type OrdersQueue } from '../../modules/orders/queue.ts';
import { commandJobOptions } from '../../shared/queue/command-queue.ts';
import type { BreakerState } from '../../shared/resilience/circuit-breaker.ts';
import { CircuitOpenError } from '../../shared/resilience/circuit-breaker.ts';
import {
  createHttpPaymentClient,
  createPaymentGateway,
  isPaymentDependencyFailure,
  PaymentRequestError,
  PaymentUnavailableError,
  type PaymentGateway,
  type PaymentRequest,
} from '../../modules/orders/worker/payment.ts';
import { createOrderWorker, type OrderWorker } from '../support/order-worker.ts';
import { eventually, migratedPool, testConfig, testLogger } from '../support/env.ts';
import { startFakePayment, type FakePayment } from '../support/fake-payment.ts';
import { cleanup } from '../support/platform.ts';

// The order worker against a real HTTP payment service (our fake on the loopback), real Redis and
// Postgres, with small breaker timings: 300 ms call timeout, 500 ms open, 3 calls before it may trip.
interface Rig {
  config: Config;
  fake: FakePayment;
  pool: Pool;
  redis: Redis;
  queue: OrdersQueue;
  payments: PaymentGateway;
  worker: OrderWorker;
  states: BreakerState[];
  logs: Record<string, unknown>[];
  close(): Promise<void>;
}

let rig: Rig | undefined;
afterEach(async () => {
  await rig?.close();
  rig = undefined;
});

async function startRig(): Promise<Rig> {
  const fake = await startFakePayment('approve');
  const config = testConfig({
    PAYMENT_URL: fake.url,
    CIRCUIT_BREAKER_TIMEOUT_MS: '300',
    CIRCUIT_BREAKER_RESET_TIMEOUT_MS: '500',
    CIRCUIT_BREAKER_VOLUME_THRESHOLD: '3',
  });
  const logs: Record<string, unknown>[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const line of chunk.toString('utf8').split('\n').filter(Boolean))
        logs.push(JSON.parse(line) as Record<string, unknown>);
      done();
    },
  });
  const logger = createLogger({ level: 'info', service: 'test', destination: sink });
  const pool = await migratedPool(config);
  const redis = new Redis(config.redis.url, { maxRetriesPerRequest: null });
  const queue = createOrdersQueue(redis, config.redis.queuePrefix);
  const states: BreakerState[] = [];
  const payments = createPaymentGateway(
    { logger, onStateChange: (_name, state) => states.push(state) },
    { url: config.payment.url, ...config.circuitBreaker },
  );
  const worker = createOrderWorker(
    { pool, logger, payments },
    {
      redisUrl: config.redis.url,
      queuePrefix: config.redis.queuePrefix,
      ...config.workers.orders,
      concurrency: 5,
      batchSize: 5,
      shutdownGraceMs: 5_000,
    },
  );
  return {
    config,
    fake,
    pool,
    redis,
    queue,
    payments,
    worker,
    states,
    logs,
    async close() {
      await worker.close();
      payments.close();
      await fake.close();
      await queue.close();
      redis.disconnect();
      await pool.end();
      await cleanup(config);
    },
  };
}

const order = (customerId: string, over: Partial<PlaceOrder> = {}): PlaceOrder => ({
  customerId,
  currency: 'EUR',
  items: [{ sku: 'sku-1', quantity: 1, unitPriceCents: 1_000 }],
  ...over,
});

async function enqueue(r: Rig, orders: PlaceOrder[]): Promise<string[]> {
  const opts = commandJobOptions({ ...r.config.workers.orders, attempts: 3 });
  const jobs = orders.map((o): OrderJob => ({
    orderId: randomUUID(),
    correlationId: `cb-${randomUUID()}`,
    acceptedAt: new Date().toISOString(),
    order: o,
  }));
  await r.queue.addBulk(
    jobs.map((data) => ({ name: PLACE_ORDER_JOB, data, opts: { ...opts, jobId: data.orderId } })),
  );
  return jobs.map((j) => j.orderId);
}

const rows = async <T extends Record<string, unknown>>(r: Rig, sql: string, params: unknown[] = []) =>
  (await r.pool.query<T>(sql, params)).rows;
const count = async (r: Rig, sql: string) => (await rows<{ n: number }>(r, sql))[0]!.n;
const transitions = (r: Rig, to: BreakerState) =>
  r.logs.filter((l) => l.msg === 'circuit breaker state changed' && l.to === to && l.breaker === 'payment');

async function allDecided(r: Rig, ids: readonly string[]): Promise<void> {
  await eventually(async () => (await count(r, `SELECT count(*)::int AS n FROM orders`)) === ids.length, {
    what: `${ids.length} orders decided`,
  });
}

describe('payment circuit breaker in the order worker', () => {
  it('opens on a failing payment service, keeps jobs waiting without burning attempts, and drains after recovery', async () => {
    const r = (rig = await startRig());
    r.fake.set('fail');
    const ids = await enqueue(
      r,
      Array.from({ length: 20 }, (_, i) => order(`cb-${i % 4}`)),
    );

    // Opens, lets a probe through after 500 ms, the probe fails: open again — the jobs meanwhile wait.
    await eventually(() => transitions(r, 'open').length >= 2 && transitions(r, 'half-open').length >= 1, {
      what: 'the breaker to open, probe and re-open',
    });
    expect(r.payments.breaker.state()).not.toBe('closed');
    expect(transitions(r, 'open')[0]).toMatchObject({
      level: 'warn',
      from: 'closed',
      to: 'open',
      failures: expect.any(Number),
    });
    expect(r.states.slice(0, 4)).toEqual(['closed', 'open', 'half-open', 'open']);
    // The breaker sheds load: far fewer calls reached the dead service than there are jobs.
    expect(r.fake.calls.length).toBeLessThan(ids.length);
    const jobs = await Promise.all(ids.map((id) => r.queue.getJob(id)));
    const jobStates = await Promise.all(ids.map((id) => r.queue.getJobState(id)));
    expect(jobs.map((j) => j?.attemptsMade)).toEqual(ids.map(() => 0));
    expect(jobStates.every((s) => ['waiting', 'delayed', 'prioritized', 'active'].includes(s))).toBe(true);
    expect(await r.queue.getFailedCount()).toBe(0);
    expect(await count(r, `SELECT count(*)::int AS n FROM dead_letters`)).toBe(0);
    expect(await count(r, `SELECT count(*)::int AS n FROM orders`)).toBe(0);

    r.fake.set('approve');
    await allDecided(r, ids);
    await eventually(() => r.payments.breaker.state() === 'closed', { what: 'the breaker to close' });
    expect(r.states.slice(-2)).toEqual(['half-open', 'closed']);
    expect(transitions(r, 'closed').at(-1)).toMatchObject({ from: 'half-open', to: 'closed' });
    const decided = await rows<{ status: string; attempts: number }>(
      r,
      `SELECT status, attempts FROM orders`,
    );
    expect(decided.every((o) => o.status === 'completed' && o.attempts === 1)).toBe(true);
    expect(await count(r, `SELECT count(*)::int AS n FROM dead_letters`)).toBe(0);
    expect(await count(r, `SELECT count(*)::int AS n FROM outbox WHERE event_type = 'order.placed'`)).toBe(
      ids.length,
    );
  });

  it('a declined payment rejects the order once (order.rejected, not retried); rule-rejected orders never call payment', async () => {
    const r = (rig = await startRig());
    r.fake.set({ mode: 'approve', declineCustomerIds: ['cb-declined'], reason: 'card expired' });
    const [declined, approved, badCurrency] = await enqueue(r, [
      order('cb-declined'),
      order('cb-approved'),
      order('cb-xts', { currency: 'XTS' }),
    ]);
    await allDecided(r, [declined!, approved!, badCurrency!]);

    const byId = new Map(
      (
        await rows<{ order_id: string; status: string; reason: string | null; attempts: number }>(
          r,
          `SELECT order_id, status, reason, attempts FROM orders`,
        )
      ).map((o) => [o.order_id, o]),
    );
    expect(byId.get(declined!)).toMatchObject({
      status: 'rejected',
      reason: 'payment declined: card expired',
      attempts: 1,
    });
    expect(byId.get(approved!)).toMatchObject({ status: 'completed', reason: null });
    expect(byId.get(badCurrency!)).toMatchObject({
      status: 'rejected',
      reason: expect.stringMatching(/currency XTS/),
    });
    const [event] = await rows<{ event_type: string; envelope: { payload: { code: string } } }>(
      r,
      `SELECT event_type, envelope FROM outbox WHERE aggregate_id = $1`,
      [declined],
    );
    expect(event).toMatchObject({
      event_type: 'order.rejected',
      envelope: { payload: { code: 'payment.declined' } },
    });
    await eventually(async () => (await r.queue.getJobState(declined!)) === 'completed');

    // One call per order that needed one, keyed by the order id so the payment service can dedupe.
    expect(r.fake.calls.map((c) => c.orderId).sort()).toEqual([declined, approved].sort());
    expect(
      r.fake.calls.every((c) => c.idempotencyKey === c.orderId && c.correlationId?.startsWith('cb-')),
    ).toBe(true);
    expect(r.payments.breaker.state()).toBe('closed');
    expect(await count(r, `SELECT count(*)::int AS n FROM dead_letters`)).toBe(0);
  });

  it('a payment slower than the breaker timeout counts as a failure and opens the breaker; nothing is lost', async () => {
    const r = (rig = await startRig());
    r.fake.set({ mode: 'slow', delayMs: 2_000 });
    const ids = await enqueue(
      r,
      Array.from({ length: 8 }, (_, i) => order(`cb-slow-${i}`)),
    );
    await eventually(() => transitions(r, 'open').length >= 1, { what: 'the breaker to open on timeouts' });
    const opened = transitions(r, 'open')[0]!;
    expect(opened.timeouts).toBeGreaterThanOrEqual(3);
    expect(await count(r, `SELECT count(*)::int AS n FROM orders`)).toBe(0);

    r.fake.set('approve');
    await allDecided(r, ids);
    const decided = await rows<{ status: string; attempts: number }>(
      r,
      `SELECT status, attempts FROM orders`,
    );
    expect(decided.every((o) => o.status === 'completed' && o.attempts === 1)).toBe(true);
    expect(await count(r, `SELECT count(*)::int AS n FROM dead_letters`)).toBe(0);
    await eventually(() => r.payments.breaker.state() === 'closed', { what: 'the breaker to close' });
  });
});

describe('payment client and breaker over HTTP (no worker)', () => {
  const req = (orderId = randomUUID()): PaymentRequest => ({
    orderId,
    customerId: 'c-1',
    currency: 'EUR',
    amountCents: 1_000,
    correlationId: 'corr-client-1',
  });
  let fake: FakePayment | undefined;
  afterEach(async () => {
    await fake?.close();
    fake = undefined;
  });

  it('classifies answers: decision, dependency failure (hang, 503, garbled) or our fault (4xx)', async () => {
    fake = await startFakePayment('approve');
    const client = createHttpPaymentClient({ url: fake.url, timeoutMs: 200 });
    await expect(client.authorize(req())).resolves.toEqual({ approved: true });
    fake.set({ mode: 'decline', reason: 'card expired' });
    await expect(client.authorize(req())).resolves.toEqual({ approved: false, reason: 'card expired' });

    fake.set('hang');
    const started = Date.now();
    const hung = await client.authorize(req()).catch((e: unknown) => e);
    expect(hung).toBeInstanceOf(PaymentUnavailableError);
    expect((hung as Error).message).toMatch(/within 200 ms/);
    expect(Date.now() - started).toBeLessThan(2_000);
    fake.set('fail');
    await expect(client.authorize(req())).rejects.toMatchObject({
      name: 'PaymentUnavailableError',
      status: 503,
    });
    fake.set('garbled');
    await expect(client.authorize(req())).rejects.toBeInstanceOf(PaymentUnavailableError);
    fake.set('bad-request');
    const refused = await client.authorize(req()).catch((e: unknown) => e);
    expect(refused).toBeInstanceOf(PaymentRequestError);
    expect(isPaymentDependencyFailure(refused)).toBe(false);

    await fake.close();
    await expect(client.authorize(req())).rejects.toMatchObject({ message: 'payment service unreachable' });
  });

  it('4xx answers do not open the breaker; dependency failures do, and then calls are not attempted', async () => {
    fake = await startFakePayment('bad-request');
    const states: string[] = [];
    const payments = createPaymentGateway(
      { logger: testLogger(), onStateChange: (_n, s) => states.push(s) },
      {
        url: fake.url,
        timeout: 200,
        errorThresholdPercentage: 50,
        resetTimeout: 60_000,
        volumeThreshold: 3,
        rollingWindowMs: 10_000,
      },
    );
    try {
      for (let i = 0; i < 5; i++)
        await expect(payments.authorize(req())).rejects.toBeInstanceOf(PaymentRequestError);
      expect(payments.breaker.state()).toBe('closed');
      fake.set('fail');
      for (let i = 0; i < 6; i++) await payments.authorize(req()).catch(() => undefined);
      expect(payments.breaker.state()).toBe('open');
      const callsWhenOpened = fake.calls.length;
      const refused = await payments.authorize(req()).catch((e: unknown) => e);
      expect(refused).toBeInstanceOf(CircuitOpenError);
      expect((refused as CircuitOpenError).retryAfterMs).toBeGreaterThan(50_000);
      expect(isPaymentDependencyFailure(refused)).toBe(true);
      expect(fake.calls.length).toBe(callsWhenOpened);
      expect(states).toEqual(['closed', 'open']);
    } finally {
      payments.close();
      payments.close(); // idempotent
    }
    await expect(payments.authorize(req())).rejects.toMatchObject({ name: 'CircuitShutdownError' });
  });
});
