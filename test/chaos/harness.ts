import { randomUUID } from 'node:crypto';
import { rabbitmqSettings } from '../../shared/bus/create-bus.ts';
import { OrdersQueues } from '../../modules/orders/queue.ts';
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { Kafka, logLevel } from 'kafkajs';
import pg from 'pg';
import { rabbitmqTopology } from '../../shared/bus/rabbitmq/bus.ts';
import { deleteRabbitmqTopology } from '../../shared/bus/rabbitmq/admin.ts';
import { loadConfig } from '../../shared/config/config.ts';
import type { PlaceOrder } from '../../modules/orders/domain.ts';
import { eventually, isolatedEnv } from '../support/env.ts';
import { request } from '../support/http.ts';
import { cleanup } from '../support/platform.ts';
import { logRecords, startProcess, type Proc } from '../support/processes.ts';
import { PROJECTOR_CONSUMER } from '../../workers/projections/projector.ts';
import { MODULES } from '../../modules/registry.ts';

/**
 * Shared plumbing of the chaos scenarios: real `api/main.ts` and `workers/main.ts` processes on an
 * isolated schema/prefix, orders posted over HTTP, and direct handles (pg, BullMQ) for assertions.
 */
export type Env = Record<string, string>;

/** An isolated environment tuned for chaos runs: quick stalled-job recovery, quiet retries. */
export function chaosEnv(overrides: Env = {}): Env {
  return isolatedEnv({
    METRICS_PORT: '0',
    RATE_LIMIT_MAX: '1000000',
    RATE_LIMIT_READ_MAX: '1000000',
    ORDERS_LOCK_DURATION_MS: '2000',
    ORDERS_STALLED_INTERVAL_MS: '1000',
    BUS_LOCK_DURATION_MS: '2000',
    BUS_STALLED_INTERVAL_MS: '1000',
    OUTBOX_BATCH_SIZE: '100',
    OUTBOX_POLL_INTERVAL_MS: '500',
    ...overrides,
  });
}

// Every process a scenario spawns, so none outlives the test run (even a failed or killed one).
const spawned = new Set<Proc>();
process.once('exit', () => {
  for (const p of spawned)
    if (p.child.exitCode === null && p.child.signalCode === null) p.child.kill('SIGKILL');
});
function track<P extends Proc>(proc: P): P {
  spawned.add(proc);
  void proc.exited.then(() => spawned.delete(proc));
  return proc;
}

/**
 * Starts `workers/main.ts` with `kinds` and waits for its "workers started" line. The process is
 * registered in `procs` at once, so a failed start is still torn down.
 */
export async function startWorkers(
  env: Env,
  kinds: string,
  extra: Env = {},
  procs?: (Proc | undefined)[],
): Promise<Proc> {
  const proc = track(startProcess('workers/main.ts', { ...env, WORKER_KINDS: kinds, ...extra }));
  procs?.push(proc);
  await eventually(
    () => {
      if (proc.child.exitCode !== null)
        throw new Error(`workers (${kinds}) exited:\n${proc.lines.slice(-20).join('\n')}`);
      return logRecords(proc).some((l) => l.msg === 'workers started');
    },
    // Patient: a scenario starts a dozen processes at once, and on a loaded machine each takes long to boot.
    { timeoutMs: 120_000, what: `workers (${kinds}) to start` },
  );
  return proc;
}

/** Starts `api/main.ts` and waits until `/readyz` answers 200; registered in `procs` at once. */
export async function startApi(env: Env, procs?: (Proc | undefined)[]): Promise<Proc & { url: string }> {
  const proc = track(startProcess('api/main.ts', env));
  procs?.push(proc);
  await eventually(
    async () => {
      if (proc.child.exitCode !== null) throw new Error(`api exited:\n${proc.lines.slice(-20).join('\n')}`);
      if (proc.port === undefined) return false;
      return (await fetch(`http://127.0.0.1:${proc.port}/readyz`)).status === 200;
    },
    { timeoutMs: 120_000, what: 'the api to become ready' },
  );
  return Object.assign(proc, { url: `http://127.0.0.1:${proc.port}` });
}

/** True once the process died from SIGKILL (a crash, not an exit). */
export const killedBySigkill = (proc: Proc) => proc.child.signalCode === 'SIGKILL';

/** kill -9, waiting for the exit. */
export async function crash(proc: Proc): Promise<void> {
  await proc.kill('SIGKILL');
}

/**
 * `n` orders for customers `<tag>-0..12`; every 10th in XTS, a currency the rules reject, so the
 * reconciliation covers `rejected` orders (and their stats) as well as `completed` ones.
 */
export function makeOrders(n: number, tag: string): PlaceOrder[] {
  return Array.from({ length: n }, (_, i) => ({
    customerId: `${tag}-${i % 13}`,
    currency: i % 10 === 9 ? 'XTS' : i % 3 === 0 ? 'USD' : 'EUR',
    items: [
      { sku: `sku-${i % 7}`, quantity: 1 + (i % 4), unitPriceCents: 100 + ((i * 37) % 5_000) },
      { sku: 'sku-extra', quantity: 1, unitPriceCents: i % 50 },
    ],
  }));
}

/**
 * Posts orders through `POST /v1/orders/batch` (≤1,000 a request); returns the accepted ids.
 * `retryUnavailableMs` > 0: each request carries an Idempotency-Key and, answered 503 in whole or in
 * part (Redis slow to answer on a loaded machine), is sent again with the same key for that long — as
 * a client should: the derived order ids make the stored jobs dedupe and the missing ones join.
 */
export async function placeBatch(
  apiUrl: string,
  orders: readonly PlaceOrder[],
  { retryUnavailableMs = 0 }: { retryUnavailableMs?: number } = {},
): Promise<string[]> {
  const ids: string[] = [];
  for (let i = 0; i < orders.length; i += 1_000) {
    const chunk = orders.slice(i, i + 1_000);
    const key = retryUnavailableMs > 0 ? randomUUID() : undefined;
    const until = Date.now() + retryUnavailableMs;
    for (let attempt = 1; ; attempt++) {
      const res = await request<{ orders: { orderId?: string }[] }>(`${apiUrl}/v1/orders/batch`, {
        method: 'POST',
        json: { orders: chunk },
        ...(key ? { headers: { 'idempotency-key': key } } : {}),
      });
      const accepted =
        res.status === 202 ? res.body.orders.flatMap((o) => (o.orderId ? [o.orderId] : [])) : [];
      const unavailable = res.status === 503 || (res.status === 202 && accepted.length !== chunk.length);
      if (unavailable && key && Date.now() < until) {
        await new Promise((r) => setTimeout(r, Math.min(250 * attempt, 2_000)));
        continue;
      }
      if (res.status !== 202)
        throw new Error(`batch answered ${res.status}: ${JSON.stringify(res.body).slice(0, 500)}`);
      if (accepted.length !== chunk.length)
        throw new Error(`batch accepted ${accepted.length} of ${chunk.length}`);
      ids.push(...accepted);
      break;
    }
  }
  return ids;
}

/** A pg pool on the scenario's schema (for reconciliation and progress probes). */
export function openDb(env: Env): pg.Pool {
  const pool = new pg.Pool({
    connectionString: env.DATABASE_URL,
    max: 3,
    options: `-c search_path=${env.DATABASE_SCHEMA}`,
  });
  pool.on('error', () => undefined); // a scenario may stop Postgres under us
  return pool;
}

export async function countOrders(db: pg.Pool): Promise<number> {
  const { rows } = await db.query<{ n: number }>('SELECT count(*)::int AS n FROM orders');
  return rows[0]!.n;
}

/** The scenario's `orders` queue, for job-level assertions. */
export function ordersQueue(env: Env): { queue: Queue; close(): Promise<void> } {
  const redis = new Redis(env.REDIS_URL!, { maxRetriesPerRequest: null });
  redis.on('error', () => undefined);
  const queue = new Queue(OrdersQueues.commands, { connection: redis, prefix: env.QUEUE_PREFIX });
  queue.on('error', () => undefined);
  return {
    queue,
    async close() {
      await queue.close().catch(() => undefined);
      redis.disconnect();
    },
  };
}

/** Log records of a process with a given message. */
export const linesWith = (proc: Proc, msg: string) => logRecords(proc).filter((l) => l.msg === msg);

/** Deletes the scenario's RabbitMQ exchanges/queues or Kafka topics (named after its isolated env). */
export async function cleanupBus(env: Env): Promise<void> {
  const config = loadConfig(env, { modules: MODULES });
  if (config.bus.kind === 'rabbitmq') {
    const c = rabbitmqSettings(config);
    await deleteRabbitmqTopology(c.url, rabbitmqTopology(c), [PROJECTOR_CONSUMER]);
  } else if (config.bus.kind === 'kafka') {
    const admin = new Kafka({
      clientId: 'chaos-cleanup',
      brokers: [...config.bus.kafka.brokers],
      logLevel: logLevel.NOTHING,
    }).admin();
    await admin.connect();
    try {
      const topics = (await admin.listTopics()).filter((t) => t.startsWith(config.bus.kafka.topic));
      if (topics.length > 0) await admin.deleteTopics({ topics });
      const { groupId } = config.bus.kafka.consumer;
      const groups = (await admin.listGroups()).groups
        .map((g) => g.groupId)
        .filter((g) => g.startsWith(groupId));
      if (groups.length > 0) await admin.deleteGroups(groups).catch(() => undefined);
    } finally {
      await admin.disconnect();
    }
  }
}

/**
 * Stops every process (SIGTERM, then SIGKILL after `graceMs`), then drops the schema, the queues and
 * the bus topology. Safe to call with processes that already died.
 */
export async function teardown(
  env: Env,
  procs: readonly (Proc | undefined)[],
  graceMs = 10_000,
): Promise<void> {
  await Promise.all(
    procs.map(async (p) => {
      if (!p || p.child.exitCode !== null || p.child.signalCode !== null) return;
      const timer = setTimeout(() => p.child.kill('SIGKILL'), graceMs);
      await p.kill('SIGTERM');
      clearTimeout(timer);
    }),
  );
  await cleanup(loadConfig(env, { modules: MODULES })).catch(() => undefined);
  await cleanupBus(env).catch(() => undefined);
}
