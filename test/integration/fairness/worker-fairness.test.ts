import { randomUUID } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { InMemorySpanExporter } from '@opentelemetry/sdk-trace-node';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { OrderJob } from '../../../modules/orders/domain.ts';
import { createOrdersQueue, PLACE_ORDER_JOB, type OrdersQueue } from '../../../modules/orders/queue.ts';
import { loadConfig, type Config } from '../../../shared/config/config.ts';
import type { Pool } from '../../../shared/db/pool.ts';
import { createFairQueue, type Admission, type FairQueue } from '../../../shared/fairness/fair-queue.ts';
import type { Tenant, TenantPolicy } from '../../../shared/fairness/tenants.ts';
import { startTracing } from '../../../shared/observability/tracing/sdk.ts';
import { commandJobOptions } from '../../../shared/queue/command-queue.ts';
import { createWorkerRedis, whenReady, type Redis as AnyRedis } from '../../../shared/queue/redis.ts';
import { eventually, isolatedEnv, migratedPool, testLogger } from '../../support/env.ts';
import { createOrderWorker, type OrderWorker } from '../../support/order-worker.ts';
import { cleanup } from '../../support/platform.ts';
import { logRecords, startProcess, type Proc } from '../../support/processes.ts';
import { ownRedisCluster, type OwnRedisCluster } from '../../support/redis-cluster.ts';
import { MODULES } from '../../../modules/registry.ts';

// Issue #21, the worker side of fairness, on real Redis and PostgreSQL with the real command worker
// (in this process, and as `workers/main.ts` processes). Jobs are admitted the way the API does:
// `fair.admit` first, then `addBulk`, held ones with the hold delay. Without the worker's dispatcher
// a held job would wait out its hold (a week): every test here would time out.

const tenant = (id: string, policy: Partial<TenantPolicy> = {}): Tenant => ({
  id,
  policy: { weight: 1, maxInFlight: 0, backlogQuota: 0, subTenants: false, ...policy },
});

/** `n` valid EUR orders of `t` (its customers `<t>:c<k>`, so the payment service knows whose call it is). */
function ordersOf(t: Tenant, n: number): OrderJob[] {
  return Array.from({ length: n }, (_, i) => {
    const orderId = randomUUID();
    return {
      orderId,
      correlationId: `fair-${orderId}`,
      acceptedAt: new Date().toISOString(),
      acceptedBy: t.id,
      tenant: t.id,
      order: {
        customerId: `${t.id}:c${i % 7}`,
        currency: 'EUR',
        items: [{ sku: 'sku-1', quantity: 1, unitPriceCents: 100 + i }],
      },
    };
  });
}

/** Where the test enqueues: the orders queue, its fair queue, and the connection that admits and adds. */
interface Producer {
  config: Config;
  client: AnyRedis;
  queue: OrdersQueue;
  fair: FairQueue;
}

function producer(config: Config, client: AnyRedis): Producer {
  const queue = createOrdersQueue(client, config.redis.queuePrefix);
  const { depth, holdMs } = config.fairness;
  return { config, client, queue, fair: createFairQueue('orders', queue.toKey(''), { depth, holdMs }) };
}

/** Enqueues `jobs` for `t` as the API does, in requests of at most 1,000: admit, then add (held: delayed). */
async function post(p: Producer, t: Tenant, jobs: readonly OrderJob[]): Promise<Admission[]> {
  const all: Admission[] = [];
  for (let i = 0; i < jobs.length; i += 1_000) {
    const chunk = jobs.slice(i, i + 1_000);
    const admitted = await p.fair.admit(
      p.client,
      chunk.map((j) => ({ id: j.orderId, tenant: t })),
    );
    await p.queue.addBulk(
      chunk.map((data, k) => ({
        name: PLACE_ORDER_JOB,
        data,
        opts: {
          ...commandJobOptions(p.config.workers.orders),
          jobId: data.orderId,
          ...(admitted[k] === 'held' ? { delay: p.config.fairness.holdMs } : {}),
        },
      })),
    );
    all.push(...admitted);
  }
  return all;
}

const idsOf = (jobs: readonly OrderJob[]) => jobs.map((j) => j.orderId);
const count = (admitted: readonly Admission[], how: Admission) => admitted.filter((a) => a === how).length;

async function decided(pool: Pool, ids: readonly string[]): Promise<number> {
  const { rows } = await pool.query<{ n: number }>(
    'SELECT count(*)::int AS n FROM orders WHERE order_id = ANY($1::uuid[])',
    [ids],
  );
  return rows[0]!.n;
}

/** Every order of `ids` decided exactly once: one write-model row and exactly one outbox event each. */
async function expectDecidedOnce(pool: Pool, ids: readonly string[]): Promise<void> {
  expect(await decided(pool, ids)).toBe(ids.length);
  const { rows } = await pool.query<{ events: number; orders: number }>(
    `SELECT count(*)::int AS events, count(DISTINCT aggregate_id)::int AS orders
       FROM outbox WHERE aggregate_id = ANY($1::text[])`,
    [ids],
  );
  expect(rows[0]).toEqual({ events: ids.length, orders: ids.length });
}

/** BullMQ's side: every job of `ids` completed, none left waiting, held, active or failed. */
async function expectAllCompleted(queue: OrdersQueue, ids: readonly string[]): Promise<void> {
  const states = await Promise.all(ids.map((id) => queue.getJobState(id)));
  const notCompleted = states.filter((s) => s !== 'completed');
  expect(notCompleted).toEqual([]);
}

/** Deletes the fair queue's own keys (`obliterate` knows only BullMQ's). */
async function dropFairKeys(client: Redis, queue: OrdersQueue): Promise<void> {
  let cursor = '0';
  do {
    const [next, keys] = await client.scan(cursor, 'MATCH', `${queue.toKey('')}fair:*`, 'COUNT', 1_000);
    cursor = next;
    if (keys.length > 0) await client.del(...keys);
  } while (cursor !== '0');
}

/**
 * A payment service on the loopback that approves after `delayMs` and records, per tenant (the
 * customer id's part before ':'), the most calls it was answering at once: a tenant's commands really
 * running at the same time, whichever process runs them.
 */
async function startCountingPayment(delayMs: number) {
  const running = new Map<string, number>();
  const peak = new Map<string, number>();
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      let who = '?';
      try {
        const body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as { customerId?: unknown };
        if (typeof body.customerId === 'string') who = body.customerId.split(':')[0]!;
      } catch {
        // counted as '?'
      }
      const now = (running.get(who) ?? 0) + 1;
      running.set(who, now);
      peak.set(who, Math.max(peak.get(who) ?? 0, now));
      setTimeout(() => {
        // Counted down before the answer leaves: the next call it allows cannot overlap this one.
        running.set(who, running.get(who)! - 1);
        res.writeHead(200, { 'content-type': 'application/json' }).end('{"approved":true}');
      }, delayMs);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/authorize`,
    peakOf: (t: Tenant) => peak.get(t.id) ?? 0,
    reset: () => peak.clear(),
    close: async () => {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/** The command worker in this process, with fairness as `config.fairness` says (the defaults). */
function inProcessWorker(
  config: Config,
  pool: Pool,
  clusterNodes?: readonly string[],
  leftoversOnly = false,
): OrderWorker {
  const { depth, holdMs, dispatchIntervalMs } = config.fairness;
  return createOrderWorker(
    { pool, logger: testLogger() },
    {
      redisUrl: config.redis.url,
      redisClusterNodes: clusterNodes,
      queuePrefix: config.redis.queuePrefix,
      ...config.workers.orders,
      shutdownGraceMs: 5_000,
      fairness: { depth, holdMs, dispatchIntervalMs, leftoversOnly },
    },
  );
}

describe('fair execution in the command worker (one process)', () => {
  let config: Config;
  let pool: Pool;
  let client: Redis;
  let p: Producer;
  let worker: OrderWorker | undefined;

  beforeAll(async () => {
    config = loadConfig(isolatedEnv(), { modules: MODULES });
    pool = await migratedPool(config);
    client = new Redis(config.redis.url, { maxRetriesPerRequest: null });
    p = producer(config, client);
  });
  afterAll(async () => {
    await worker?.close();
    await dropFairKeys(client, p.queue).catch(() => undefined);
    await p.queue.close();
    client.disconnect();
    await pool.end();
    await cleanup(config);
  });

  it("a flood of 2,000 orders from one tenant does not keep another tenant's few orders waiting behind it", async () => {
    const flood = tenant('flood');
    const small = tenant('small');
    const floodJobs = ordersOf(flood, 2_000);
    const smallJobs = ordersOf(small, 5);
    // Both posted before the worker starts: the wait list holds `depth` (100) of the flood, the rest of
    // it and all of the small tenant's wait for their turns.
    const floodAdmitted = await post(p, flood, floodJobs);
    expect(count(floodAdmitted, 'direct')).toBe(config.fairness.depth);
    expect(count(await post(p, small, smallJobs), 'held')).toBe(5);
    const finished: string[] = [];
    worker = inProcessWorker(config, pool);
    worker.worker.on('completed', (job) => finished.push(job.id!));

    const smallIds = new Set(idsOf(smallJobs));
    await eventually(() => [...smallIds].every((id) => finished.includes(id)), {
      what: "the small tenant's 5 orders to complete",
    });
    // When the last of them completed, most of the flood had not even started: it waits its turns.
    const lastSmall = Math.max(...[...smallIds].map((id) => finished.indexOf(id)));
    const floodDoneBefore = finished.slice(0, lastSmall).filter((id) => !smallIds.has(id)).length;
    expect(floodDoneBefore).toBeLessThan(300);
    // FIFO would have put them after all 2,000.

    const all = [...idsOf(floodJobs), ...smallIds];
    await eventually(async () => (await decided(pool, all)) === all.length, {
      what: 'all 2,005 orders decided',
      timeoutMs: 30_000,
    });
    await expectDecidedOnce(pool, all);
    await eventually(() => finished.length === all.length, { what: 'every job completed' });
    const { tenants } = await p.fair.backlog(client, 10);
    expect(tenants).toEqual([]); // nobody waits
  });

  // The worker of the test above (or a new one, run alone), now with tracing on.
  it('names the tenant on the command’s consumer span (conveyor.tenant)', async () => {
    worker ??= inProcessWorker(config, pool);
    const exporter = new InMemorySpanExporter();
    const tracing = await startTracing(
      { ...config.tracing, enabled: true, batch: { ...config.tracing.batch, scheduledDelayMillis: 10 } },
      { exporter, instrumentations: [] },
    );
    try {
      const traced = tenant('traced');
      const jobs = ordersOf(traced, 2);
      await post(p, traced, jobs);
      await eventually(async () => (await decided(pool, idsOf(jobs))) === 2, { what: '2 orders decided' });
      const spans = await eventually(
        async () => {
          await tracing.forceFlush();
          const found = exporter
            .getFinishedSpans()
            .filter(
              (s) =>
                s.name === 'process orders' &&
                idsOf(jobs).includes(s.attributes['messaging.message.id'] as string),
            );
          return found.length === 2 && found;
        },
        { what: 'the 2 consumer spans' },
      );
      expect(spans.map((s) => s.attributes['conveyor.tenant'])).toEqual(['traced', 'traced']);
    } finally {
      await tracing.shutdown();
    }
  });
});

describe('fairness turned off (FAIRNESS=false) with commands still held from before', () => {
  it('the workers still let every held command in: none waits out its hold', async () => {
    const config = loadConfig(isolatedEnv({ FAIRNESS_DEPTH: '10' }), { modules: MODULES });
    const pool = await migratedPool(config);
    const client = new Redis(config.redis.url, { maxRetriesPerRequest: null });
    const p = producer(config, client);
    const jobs = ordersOf(tenant('before'), 300);
    expect(count(await post(p, tenant('before'), jobs), 'held')).toBe(290);
    // What workers/start.ts gives a worker when FAIRNESS=false: the periodic call only.
    const worker = inProcessWorker(config, pool, undefined, true);
    try {
      await eventually(async () => (await decided(pool, idsOf(jobs))) === jobs.length, {
        what: 'all 300 held orders decided',
        timeoutMs: 30_000,
      });
      await expectDecidedOnce(pool, idsOf(jobs));
    } finally {
      await worker.close();
      await dropFairKeys(client, p.queue).catch(() => undefined);
      await p.queue.close();
      client.disconnect();
      await pool.end();
      await cleanup(config);
    }
  });
});

describe('fair execution across worker processes (workers/main.ts)', () => {
  let env: Record<string, string>;
  let config: Config;
  let pool: Pool;
  let client: Redis;
  let p: Producer;
  let payment: Awaited<ReturnType<typeof startCountingPayment>>;
  const procs: Proc[] = [];
  let next: OrderWorker | undefined;

  async function spawnWorker(): Promise<Proc> {
    const proc = startProcess('workers/main.ts', { ...env, WORKER_KINDS: 'orders' });
    procs.push(proc);
    await eventually(
      () => {
        if (proc.child.exitCode !== null || proc.child.signalCode !== null)
          throw new Error(`workers exited:\n${proc.lines.slice(-20).join('\n')}`);
        return logRecords(proc).some((l) => l.msg === 'workers started');
      },
      { timeoutMs: 40_000, what: 'a worker process to start' },
    );
    return proc;
  }

  /** The order ids a process logged as processed. */
  const processedBy = (proc: Proc) =>
    new Set(
      logRecords(proc)
        .filter((l) => l.msg === 'command processed')
        .map((l) => l.orderId as string),
    );

  beforeAll(async () => {
    payment = await startCountingPayment(40);
    env = isolatedEnv({
      PAYMENT_URL: payment.url,
      // Each process takes more at once than the limited tenant may have in flight.
      ORDERS_CONCURRENCY: '8',
      // As the chaos tests: a killed worker's jobs come back after 2 s, not 30 s. Fairness: defaults.
      ORDERS_LOCK_DURATION_MS: '2000',
      ORDERS_STALLED_INTERVAL_MS: '1000',
    });
    config = loadConfig(env, { modules: MODULES });
    pool = await migratedPool(config);
    client = new Redis(config.redis.url, { maxRetriesPerRequest: null });
    p = producer(config, client);
    await Promise.all([spawnWorker(), spawnWorker()]);
  });
  afterAll(async () => {
    await next?.close();
    await Promise.all(procs.map((proc) => proc.kill('SIGKILL')));
    await payment?.close();
    if (p) await dropFairKeys(client, p.queue).catch(() => undefined);
    await p?.queue.close();
    client?.disconnect();
    await pool?.end();
    if (config) await cleanup(config);
  });

  it('max_in_flight holds across two worker processes, each taking more at once than the limit', async () => {
    const limited = tenant('limited', { maxInFlight: 3 });
    const other = tenant('other');
    const limitedJobs = ordersOf(limited, 45);
    const otherJobs = ordersOf(other, 90);
    payment.reset();
    const admitted = await post(p, limited, limitedJobs);
    expect(count(admitted, 'direct')).toBe(3);
    await post(p, other, otherJobs);

    const all = [...idsOf(limitedJobs), ...idsOf(otherJobs)];
    await eventually(async () => (await decided(pool, all)) === all.length, {
      what: 'all 135 orders decided',
    });
    await expectDecidedOnce(pool, all);
    // Never more than 3 of its commands at the payment service at once; the other tenant had more.
    expect(payment.peakOf(limited)).toBeLessThanOrEqual(3);
    expect(payment.peakOf(limited)).toBeGreaterThanOrEqual(2);
    expect(payment.peakOf(other)).toBeGreaterThan(3);
    // Both processes ran the limited tenant's commands: the limit is the tenant's, not a process's.
    const [first, second] = procs.map(processedBy);
    const limitedIds = idsOf(limitedJobs);
    expect(limitedIds.filter((id) => first!.has(id)).length).toBeGreaterThan(0);
    expect(limitedIds.filter((id) => second!.has(id)).length).toBeGreaterThan(0);
    // The log lines name the tenant.
    const line = logRecords(procs[0]!).find((l) => l.msg === 'command processed');
    expect(line?.tenant).toMatch(/^(limited|other)$/);
    // Every slot was given back (by the process that finished the job, just after it completed).
    await eventually(async () => (await client.zcard(`${p.queue.toKey('')}fair:run:limited`)) === 0, {
      what: "the limited tenant's slots all given back",
    });
    expect((await p.fair.backlog(client, 10)).tenants).toEqual([]);
  });

  it('kill -9 of one worker process mid-run: every order decided exactly once, no tenant stuck', async () => {
    const [victim, survivor] = procs;
    const limited = tenant('limited', { maxInFlight: 3 });
    const big = tenant('big');
    const medium = tenant('medium');
    const jobs = {
      limited: ordersOf(limited, 60),
      big: ordersOf(big, 300),
      medium: ordersOf(medium, 150),
    };
    await post(p, limited, jobs.limited);
    await post(p, big, jobs.big);
    await post(p, medium, jobs.medium);
    const all = [...idsOf(jobs.limited), ...idsOf(jobs.big), ...idsOf(jobs.medium)];
    await eventually(async () => (await decided(pool, all)) >= 80, { what: '80 orders decided' });
    await victim!.kill('SIGKILL');
    expect(await decided(pool, all)).toBeLessThan(all.length);

    // The survivor takes over: the victim's jobs come back through BullMQ's stalled-job check, their
    // slots with them; held jobs keep getting their turns.
    await eventually(async () => (await decided(pool, all)) === all.length, {
      what: 'all 510 orders decided after the kill',
      timeoutMs: 30_000,
    });
    await expectDecidedOnce(pool, all);
    await eventually(
      async () =>
        (await Promise.all(all.map((id) => p.queue.getJobState(id)))).every((s) => s === 'completed'),
      { what: 'every job completed' },
    );
    expect(await p.queue.getFailedCount()).toBe(0);
    const { tenants } = await p.fair.backlog(client, 10);
    expect(tenants).toEqual([]);

    // Not stuck: the limited tenant's next orders run (a slot the victim took with it is given back
    // by the stalled-job recovery, or by the sweep), still at most 3 at once.
    payment.reset();
    const after = ordersOf(limited, 12);
    await post(p, limited, after);
    await eventually(async () => (await decided(pool, idsOf(after))) === after.length, {
      what: "the limited tenant's next 12 orders decided",
    });
    expect(payment.peakOf(limited)).toBeLessThanOrEqual(3);
    expect(processedBy(survivor!).size).toBeGreaterThan(0);
  });

  it('graceful shutdown with held jobs: nothing lost, the next worker runs the rest', async () => {
    const survivor = procs[1]!;
    const flood = tenant('flood', { maxInFlight: 5 });
    const small = tenant('small');
    const floodJobs = ordersOf(flood, 400);
    const smallJobs = ordersOf(small, 20);
    await post(p, flood, floodJobs);
    await post(p, small, smallJobs);
    const all = [...idsOf(floodJobs), ...idsOf(smallJobs)];
    await eventually(async () => (await decided(pool, all)) >= 40, { what: '40 orders decided' });

    expect(await survivor.kill('SIGTERM')).toBe(0);
    const waiting = await p.fair.backlog(client, 10);
    expect(waiting.tenants.find((t) => t.tenant === 'flood')?.waiting ?? 0).toBeGreaterThan(0);
    expect(await decided(pool, all)).toBeLessThan(all.length);
    expect(
      logRecords(survivor).filter((l) => l.msg === 'fair dispatch failed; retried at the next tick'),
    ).toEqual([]);

    next = inProcessWorker(config, pool);
    await eventually(async () => (await decided(pool, all)) === all.length, {
      what: 'the rest decided by the next worker',
      timeoutMs: 30_000,
    });
    await expectDecidedOnce(pool, all);
    await eventually(
      async () =>
        (await Promise.all(all.map((id) => p.queue.getJobState(id)))).every((s) => s === 'completed'),
      { what: 'every job completed' },
    );
    await expectAllCompleted(p.queue, all);
    // The stopped process gave back the slots of what it finished while stopping: none is left taken.
    await eventually(async () => (await client.zcard(`${p.queue.toKey('')}fair:run:flood`)) === 0, {
      what: "the flood tenant's slots all given back",
    });
    expect((await p.fair.backlog(client, 10)).tenants).toEqual([]);
  });
});

describe('fair execution on a Redis Cluster', () => {
  let cluster: OwnRedisCluster;
  let config: Config;
  let pool: Pool;
  let client: AnyRedis;
  let worker: OrderWorker | undefined;

  beforeAll(async () => {
    cluster = await ownRedisCluster({ masters: 3 });
    config = loadConfig(isolatedEnv({ REDIS_CLUSTER_NODES: cluster.seeds }), { modules: MODULES });
    pool = await migratedPool(config);
    client = createWorkerRedis(
      { url: config.redis.url, commandTimeoutMs: 0, clusterNodes: config.redis.clusterNodes },
      'test-fair-cluster',
    );
    await whenReady(client);
  }, 60_000);
  afterAll(async () => {
    await worker?.close();
    await client?.quit().catch(() => undefined);
    await pool?.end();
    if (config) await cleanup(config); // the schema (the cluster's keys go with the cluster)
    await cluster?.stop();
  });

  it('a flood and another tenant on the cluster: turns taken in the queue’s slot, everything decided', async () => {
    const p = producer(config, client);
    expect(p.queue.toKey('')).toBe(`{${config.redis.queuePrefix}:orders}:orders:`);
    const flood = tenant('flood');
    const small = tenant('small');
    const floodJobs = ordersOf(flood, 500);
    const smallJobs = ordersOf(small, 5);
    const finished: string[] = [];
    try {
      expect(count(await post(p, flood, floodJobs), 'held')).toBe(400);
      expect(count(await post(p, small, smallJobs), 'held')).toBe(5);
      worker = inProcessWorker(config, pool, config.redis.clusterNodes);
      worker.worker.on('completed', (job) => finished.push(job.id!));
      const smallIds = new Set(idsOf(smallJobs));
      const all = [...idsOf(floodJobs), ...smallIds];
      await eventually(async () => (await decided(pool, all)) === all.length, {
        what: 'all 505 orders decided on the cluster',
        timeoutMs: 30_000,
      });
      await expectDecidedOnce(pool, all);
      await eventually(() => finished.length === all.length, { what: 'every job completed' });
      const lastSmall = Math.max(...[...smallIds].map((id) => finished.indexOf(id)));
      expect(lastSmall).toBeLessThan(250);
      expect((await p.fair.backlog(client, 10)).tenants).toEqual([]);
    } finally {
      await p.queue.close();
    }
  });
});
