import { createWriteStream } from 'node:fs';
import { Redis } from 'ioredis';
import { createPool, type Pool } from '../../shared/db/pool.ts';
import { createOrdersQueue, PLACE_ORDER_JOB, type OrdersQueue } from '../../modules/orders/queue.ts';
import { commandJobOptions } from '../../shared/queue/command-queue.ts';
import { makeOrderJobs } from '../baselines/naive-orders.ts';
import { redisCost, redisCounters, startPrivateRedis, type RedisCost } from '../fairness/private-redis.ts';
import type { ProcessMonitor } from '../monitor.ts';
import { FAIR_SCRIPTS } from '../../shared/fairness/fair-queue.ts';
import { createHash } from 'node:crypto';
import { attribute } from './attribute.ts';
import { createStack, type Stack } from '../stack.ts';
import {
  backendCpu,
  enableWalInspect,
  lsnDiff,
  pgSnapshot,
  procTicks,
  schemaWal,
  settledTableStats,
  tableDeltas,
  type SchemaWal,
  type TableRows,
} from './pg.ts';

/** One measured drain: what each order cost the servers and the worker process. */
export interface CostRun {
  /** `baseline` or the variant's `KEY=VALUE,…`. */
  variant: string;
  env: Record<string, string>;
  orders: number;
  warmup: number;
  seconds: number;
  ordersPerS: number;
  redis: RedisCost & {
    /** Every command by name, per order (the whole list). */
    byCommand: { command: string; perOrder: number }[];
    /** Redis's own time per call of each command (INFO commandstats usec / calls over the window), µs. */
    usecPerCall: Record<string, number>;
  };
  worker: { cpuMsPerOrder: number };
  pg: {
    /** Commit records of transactions that wrote to the schema (pg_walinspect), per order. */
    writeTransactionsPerOrder: number | null;
    /** pg_stat_database of the whole `test` database: other sessions on the machine are in it. */
    dbTransactionsPerOrderMachineWide: number;
    rowsPerOrder: number;
    tables: (TableRows & { perOrder: number })[];
    /** WAL of records touching the schema's relations plus their commits (pg_walinspect), per order. */
    walBytesPerOrder: number | null;
    wal: SchemaWal | null;
    /** pg_current_wal_lsn() difference: every session on the server. */
    walBytesPerOrderMachineWide: number;
    /** CPU of the backends connected to the worker process (not the WAL writer, checkpointer, autovacuum). */
    cpuMsPerOrder: number;
    backends: number;
    /** Whether the table statistics stopped moving before they were read. */
    statsSettled: boolean;
  };
  /** Commands by origin per order, from the MONITOR capture (only with `monitorFile`). */
  attribution?: {
    origin: string;
    callsPerOrder: number;
    commandsPerOrder: number;
    inner: Record<string, number>;
  }[];
  verified: {
    ok: boolean;
    expected: number;
    orders: number;
    outbox: number;
    outboxPublished: number;
    projected: number;
    views: number;
    statsCounted: number;
    deadLetters: number;
    jobsCompleted: number;
    jobsLeft: number;
    problems: string[];
  };
}

export interface CostDrainOptions {
  variant: string;
  env: Record<string, string>;
  orders: number;
  warmup: number;
  logLevel: string;
  monitor: ProcessMonitor;
  /** Told of progress (a phase, or orders projected so far). */
  onStep?: (message: string) => void;
  /**
   * Writes every command Redis runs during the window (MONITOR: scripts' inner calls marked `lua`) to
   * this file, one JSON array `[source, ...args]` a line, for {@link attribute}. Costs Redis CPU: the
   * run's CPU numbers are then not comparable.
   */
  monitorFile?: string;
  /** Called with each started stack so an interrupt can close it. */
  live?: Set<{ close(): Promise<unknown> }>;
  /**
   * Runs the worker with `--cpu-prof` into `<cpuProfDir>/cost-<variant>.<label>/` (the whole process:
   * boot and warm-up too). Profiling slows the worker: the run's CPU numbers are then not comparable.
   */
  cpuProfDir?: string;
}

async function enqueue(queue: OrdersQueue, count: number, tag: string): Promise<void> {
  const opts = commandJobOptions({ attempts: 5, backoffMs: 1_000, keepCompletedSeconds: 3_600 });
  const jobs = makeOrderJobs(count, tag, 3);
  for (let i = 0; i < count; i += 1_000) {
    await queue.addBulk(
      jobs
        .slice(i, i + 1_000)
        .map((data) => ({ name: PLACE_ORDER_JOB, data, opts: { ...opts, jobId: data.orderId } })),
    );
  }
}

async function progressOf(pool: Pool): Promise<{ decided: number; projected: number }> {
  return (
    await pool.query<{ decided: number; projected: number }>(
      `SELECT (SELECT count(*) FROM orders)::int AS decided, (SELECT count(*) FROM projection_inbox)::int AS projected`,
    )
  ).rows[0]!;
}

/** Calls and time (µs) of every command so far, from INFO commandstats (a script's time includes its commands'). */
async function commandUsec(redis: Redis): Promise<Map<string, { calls: number; usec: number }>> {
  const stats = await redis.info('commandstats');
  const out = new Map<string, { calls: number; usec: number }>();
  for (const m of stats.matchAll(/^cmdstat_([^:]+):calls=(\d+),usec=(\d+)/gm))
    out.set(m[1]!, { calls: Number(m[2]), usec: Number(m[3]) });
  return out;
}

/** Polls `probe` every `intervalMs` until true; throws at the deadline or when the stack's worker exits. */
async function until(
  what: string,
  timeoutMs: number,
  stack: Stack,
  probe: () => Promise<boolean>,
  intervalMs = 100,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    stack.assertAlive();
    if (await probe()) return;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}

const per = (n: number, orders: number, digits = 3) => {
  const f = 10 ** digits;
  return Math.round((n / orders) * f) / f;
};

/**
 * One drain on a fresh stack: a private redis-server, an isolated schema, one uncapped
 * `workers/main.ts` with `env` on top of the defaults. `warmup` orders go through first (JIT, pools,
 * prepared statements; not measured); then `orders` are added to the paused `orders` queue, the queue
 * resumes and the window runs until every order is decided and projected.
 */
export async function costDrain(o: CostDrainOptions): Promise<CostRun> {
  const step = o.onStep ?? (() => undefined);
  const redisServer = await startPrivateRedis();
  const stack = createStack({
    name: `cost-${o.variant}`,
    bus: 'bullmq',
    logLevel: o.logLevel,
    monitor: o.monitor,
    cpuProfDir: o.cpuProfDir,
    env: { ...o.env, REDIS_URL: redisServer.url },
  });
  const closer = { close: () => stack.close() };
  o.live?.add(closer);
  const schema = stack.config.database.schema;
  const pool = createPool({ ...stack.config.database, poolMax: 3, statementTimeoutMs: 300_000 });
  const client = new Redis(redisServer.url, { maxRetriesPerRequest: null });
  const queue = createOrdersQueue(client, stack.config.redis.queuePrefix);
  try {
    // The worker migrates the schema at boot, before its workers consume.
    await stack.startWorkers(1);
    const worker = stack.processes.find((p) => p.label.startsWith('workers'))!;
    const workerPid = worker.child.pid!;
    await until('the worker to consume', 60_000, stack, async () => (await queue.getWorkersCount()) > 0);
    const walInspect = await enableWalInspect(pool, schema);

    step(`warm-up: ${o.warmup} orders`);
    await enqueue(queue, o.warmup, 'warm');
    await until('the warm-up to be projected', 120_000, stack, async () => {
      const p = await progressOf(pool);
      return p.decided >= o.warmup && p.projected >= o.warmup;
    });
    await queue.pause();
    // Meanwhile the warm-up's statistics get reported, so the window's deltas hold only its own.
    await Promise.all([
      enqueue(queue, o.orders, 'cost'),
      settledTableStats(pool, schema, (t) => (t.get('orders')?.inserted ?? 0) >= o.warmup),
    ]);

    const expected = o.warmup + o.orders;
    const pgPort = Number(new URL(stack.config.database.url).port || 5432);
    const backends = backendCpu(pool, workerPid, pgPort);
    const usecBefore = await commandUsec(client);
    const redisBefore = await redisCounters(client);
    const pgBefore = await pgSnapshot(pool, schema);
    const ticksBefore = procTicks(workerPid)!;
    const tap = o.monitorFile ? await client.monitor() : undefined;
    const monitorOut = o.monitorFile ? createWriteStream(o.monitorFile) : undefined;
    tap?.on('monitor', (_time: string, args: string[], source: string) => {
      monitorOut!.write(`${JSON.stringify([source.includes('lua') ? 'lua' : 'client', ...args])}\n`);
    });
    await backends.start();
    step(`drain: ${o.orders} orders`);
    const t0 = performance.now();
    await queue.resume();
    let lastShown = t0;
    await until(
      'every order decided and projected',
      600_000,
      stack,
      async () => {
        const p = await progressOf(pool);
        if (performance.now() - lastShown > 2_000) {
          lastShown = performance.now();
          step(`  ${p.decided - o.warmup} decided, ${p.projected - o.warmup} projected`);
        }
        return p.decided >= expected && p.projected >= expected;
      },
      50,
    );
    const seconds = (performance.now() - t0) / 1000;
    const ticksAfter = procTicks(workerPid)!;
    const redisAfter = await redisCounters(client);
    const usecAfter = await commandUsec(client);
    const pgAfterLsn = await pgSnapshot(pool, schema);
    const backendUse = await backends.stop();
    if (tap) {
      tap.disconnect();
      await new Promise((r) => monitorOut!.end(r));
    }

    step('waiting for the table statistics to settle');
    const settled = await settledTableStats(
      pool,
      schema,
      (t) => (t.get('orders')?.inserted ?? 0) >= expected,
    );
    step('reading the WAL of the window');
    const wal = walInspect
      ? await schemaWal(pool, schema, walInspect, pgBefore.lsn, pgAfterLsn.lsn).catch(() => null)
      : null;

    const counts = (
      await pool.query<{
        orders: number;
        outbox: number;
        published: number;
        views: number;
        projected: number;
        counted: number;
        dead: number;
      }>(
        `SELECT (SELECT count(*) FROM orders)::int AS orders, (SELECT count(*) FROM outbox)::int AS outbox,
                (SELECT count(*) FROM outbox WHERE published_at IS NOT NULL)::int AS published,
                (SELECT count(*) FROM order_view)::int AS views,
                (SELECT count(*) FROM projection_inbox)::int AS projected,
                (SELECT coalesce(sum(completed_count + rejected_count), 0) FROM daily_stats)::int AS counted,
                (SELECT count(*) FROM dead_letters)::int AS dead`,
      )
    ).rows[0]!;
    const jobs = await queue.getJobCounts('completed', 'failed', 'waiting', 'paused', 'active', 'delayed');
    const jobsLeft = (jobs.failed ?? 0) + (jobs.waiting ?? 0) + (jobs.paused ?? 0) + (jobs.active ?? 0);
    const problems: string[] = [];
    const expect = (name: string, got: number, want: number) => {
      if (got !== want) problems.push(`${name}: ${got}, expected ${want}`);
    };
    expect('orders', counts.orders, expected);
    expect('order_view rows', counts.views, expected);
    expect('projection_inbox rows', counts.projected, expected);
    expect('orders counted in daily_stats', counts.counted, expected);
    expect('dead letters', counts.dead, 0);
    expect('outbox rows published', counts.published, counts.outbox);
    expect('orders jobs completed', jobs.completed ?? 0, expected);
    expect('orders jobs failed/waiting/active', jobsLeft, 0);
    if (counts.outbox < expected) problems.push(`outbox rows: ${counts.outbox}, fewer than the orders`);

    const attribution = o.monitorFile
      ? (
          await attribute(
            o.monitorFile,
            stack.config.redis.queuePrefix,
            new Map(
              Object.entries(FAIR_SCRIPTS).map(([name, lua]) => [
                createHash('sha1').update(lua).digest('hex'),
                name,
              ]),
            ),
          )
        ).map((a) => ({
          origin: a.origin,
          callsPerOrder: per(a.calls, o.orders),
          commandsPerOrder: per(a.commands, o.orders),
          inner: Object.fromEntries([...a.inner].map(([c, n]) => [c, per(n, o.orders)])),
        }))
      : undefined;
    const cost = redisCost(redisBefore, redisAfter, o.orders);
    const byCommand = [...redisAfter.calls]
      .map(([command, n]) => ({ command, calls: n - (redisBefore.calls.get(command) ?? 0) }))
      .filter((c) => c.command !== 'info' && c.calls > 0)
      .sort((a, b) => b.calls - a.calls)
      .map((c) => ({ command: c.command, perOrder: per(c.calls, o.orders) }));
    const tables = tableDeltas(pgBefore.tables, settled.tables).map((t) => ({
      ...t,
      perOrder: per(t.inserted + t.updated + t.deleted, o.orders),
    }));
    return {
      variant: o.variant,
      env: o.env,
      orders: o.orders,
      warmup: o.warmup,
      seconds: Math.round(seconds * 100) / 100,
      ordersPerS: Math.round(o.orders / seconds),
      redis: {
        ...cost,
        byCommand,
        usecPerCall: Object.fromEntries(
          [...usecAfter].flatMap(([command, a]) => {
            const b = usecBefore.get(command) ?? { calls: 0, usec: 0 };
            const calls = a.calls - b.calls;
            return calls > 0 ? [[command, Math.round(((a.usec - b.usec) / calls) * 100) / 100]] : [];
          }),
        ),
      },
      worker: { cpuMsPerOrder: per((ticksAfter - ticksBefore) * 10, o.orders) },
      pg: {
        writeTransactionsPerOrder: wal ? per(wal.commits, o.orders) : null,
        dbTransactionsPerOrderMachineWide: per(pgAfterLsn.dbXacts - pgBefore.dbXacts, o.orders),
        rowsPerOrder: per(
          tables.reduce((s, t) => s + t.inserted + t.updated + t.deleted, 0),
          o.orders,
        ),
        tables,
        walBytesPerOrder: wal ? Math.round(wal.bytes / o.orders) : null,
        wal,
        walBytesPerOrderMachineWide: Math.round(lsnDiff(pgBefore.lsn, pgAfterLsn.lsn) / o.orders),
        cpuMsPerOrder: per(backendUse.cpuMs, o.orders),
        backends: backendUse.backends,
        statsSettled: settled.settled,
      },
      ...(attribution ? { attribution } : {}),
      verified: {
        ok: problems.length === 0,
        expected,
        orders: counts.orders,
        outbox: counts.outbox,
        outboxPublished: counts.published,
        projected: counts.projected,
        views: counts.views,
        statsCounted: counts.counted,
        deadLetters: counts.dead,
        jobsCompleted: jobs.completed ?? 0,
        jobsLeft,
        problems,
      },
    };
  } finally {
    await queue.close().catch(() => undefined);
    await stack.close().catch(() => undefined);
    o.live?.delete(closer);
    client.disconnect();
    await pool.end().catch(() => undefined);
    await redisServer.stop();
  }
}
