import { Redis } from 'ioredis';
import { loadConfig } from '../../shared/config/config.ts';
import { migrate } from '../../shared/db/migrate.ts';
import { createPool, type Pool } from '../../shared/db/pool.ts';
import { createOrdersQueue, PLACE_ORDER_JOB, type OrdersQueue } from '../../modules/orders/queue.ts';
import { commandJobOptions } from '../../shared/queue/command-queue.ts';
import { isolatedEnv } from '../../test/support/env.ts';
import { cleanup } from '../../test/support/platform.ts';
import { makeOrderJobs } from '../baselines/naive-orders.ts';
import { createMonitor, type MonitorWindow } from '../monitor.ts';
import { startReplica, until, type CgroupLayout, type Replica } from './replica.ts';
import { sampleServerStats, type ServerStats } from './server-stats.ts';
import { MODULES } from '../../modules/registry.ts';

export interface CappedDrainOptions {
  layout: CgroupLayout;
  replicas: number;
  /** CPU limit of each replica, in cores. */
  cores: number;
  /** Orders drained and measured. */
  backlog: number;
  /** Orders per replica drained first, not measured (JIT, pools, prepared statements). */
  warmupPerReplica: number;
  /** Extra platform environment. */
  env?: Record<string, string>;
  /**
   * One replica per worker kind (`orders`, `outbox`, `projections`) instead of `replicas` full ones:
   * each stage's CPU per order, for the capacity model.
   */
  splitStages?: boolean;
  /** Run replicas from this compiled output (bench/scaling/build.ts) instead of through tsx. */
  compiledDir?: string;
  /** Called once a second during the measured drain with orders projected so far. */
  onProgress?: (projected: number, elapsedS: number) => void;
}

export interface ReplicaStat {
  label: string;
  cpuCores: number;
  throttledPct: number;
  throttledMs: number;
}

export interface CappedDrainResult {
  replicas: number;
  cores: number;
  backlog: number;
  seconds: number;
  perS: number;
  replicaStats: ReplicaStat[];
  monitor: MonitorWindow;
  server: ServerStats;
  /**
   * Counted after the drain: orders, views, events projected and the orders the stats count must each
   * equal warm-up + backlog (a doubled projection would count an order twice), no dead letters.
   */
  verified: {
    ok: boolean;
    expected: number;
    orders: number;
    views: number;
    projected: number;
    statsCounted: number;
    deadLetters: number;
  };
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

async function projectedCount(pool: Pool): Promise<number> {
  return (await pool.query<{ n: number }>('SELECT count(*)::int AS n FROM projection_inbox')).rows[0]!.n;
}

/**
 * Drains one backlog with `replicas` worker processes, each in its own CPU-limited cgroup like a pod
 * with `limits.cpu`: every replica warms up first, the backlog is put in place while the queue is
 * paused, then the queue resumes and the clock runs until the last order is projected. Reports the
 * rate, the CPU of each replica and of Redis and PostgreSQL, each replica's CFS throttling, per-order
 * server work, and a count of everything.
 */
export async function cappedDrain(o: CappedDrainOptions): Promise<CappedDrainResult> {
  const env = isolatedEnv({ LOG_LEVEL: 'warn', METRICS_PORT: '0', SHUTDOWN_GRACE_MS: '10000', ...o.env });
  const config = loadConfig(env, { modules: MODULES });
  const pool = createPool({ ...config.database, poolMax: 2, statementTimeoutMs: 120_000 });
  await migrate(pool, config.database.schema, MODULES);
  const redis = new Redis(config.redis.url, { maxRetriesPerRequest: null });
  const queue = createOrdersQueue(redis, config.redis.queuePrefix);
  const monitor = createMonitor();
  monitor.watchGroup('redis', ['redis-server']);
  monitor.watchGroup('postgres', ['postgres']);
  const replicas: Replica[] = [];
  try {
    const plan = o.splitStages
      ? ['orders', 'outbox', 'projections'].map((kind) => ({
          label: kind,
          env: { ...env, WORKER_KINDS: kind },
        }))
      : Array.from({ length: o.replicas }, (_, i) => ({ label: `replica-${i + 1}`, env }));
    for (const p of plan) {
      const replica = startReplica(o.layout, p.label, o.cores, 'workers/main.ts', p.env, o.compiledDir);
      replicas.push(replica);
      monitor.watch(replica.label, replica.child.pid!);
    }
    const consumers = o.splitStages ? 1 : o.replicas;
    await until(
      'every replica to consume',
      120_000,
      async () => (await queue.getWorkersCount()) >= consumers,
      replicas,
    );

    const warmup = o.warmupPerReplica * consumers;
    await enqueue(queue, warmup, 'warm');
    await until(
      'the warm-up to be projected',
      300_000,
      async () => (await projectedCount(pool)) >= warmup,
      replicas,
    );

    await queue.pause();
    await enqueue(queue, o.backlog, 'drain');
    const before = replicas.map((r) => r.group.stat());
    monitor.window();
    const server = sampleServerStats(redis, pool);
    await server.start();
    const t0 = performance.now();
    await queue.resume();
    let lastReport = t0;
    await until(
      'the backlog to be projected',
      600_000,
      async () => {
        const n = (await projectedCount(pool)) - warmup;
        const now = performance.now();
        if (o.onProgress && now - lastReport >= 1_000) {
          lastReport = now;
          o.onProgress(n, (now - t0) / 1000);
        }
        return n >= o.backlog;
      },
      replicas,
    );
    const seconds = (performance.now() - t0) / 1000;
    const window = monitor.window();
    const serverStats = await server.stop(o.backlog);
    const replicaStats = replicas.map((r, i) => {
      const s = r.group.stat();
      const periods = s.periods - before[i]!.periods;
      return {
        label: r.label,
        cpuCores: window.processes.find((p) => p.label === r.label)?.cpuCores ?? 0,
        throttledPct:
          periods > 0 ? Math.round(((s.throttled - before[i]!.throttled) / periods) * 1000) / 10 : 0,
        throttledMs: Math.round(s.throttledMs - before[i]!.throttledMs),
      };
    });
    const counts = (
      await pool.query<{ orders: number; views: number; projected: number; counted: number; dead: number }>(
        `SELECT (SELECT count(*) FROM orders)::int AS orders, (SELECT count(*) FROM order_view)::int AS views,
                (SELECT count(*) FROM projection_inbox)::int AS projected,
                (SELECT coalesce(sum(completed_count + rejected_count), 0) FROM daily_stats)::int AS counted,
                (SELECT count(*) FROM dead_letters)::int AS dead`,
      )
    ).rows[0]!;
    const expected = warmup + o.backlog;
    return {
      replicas: o.replicas,
      cores: o.cores,
      backlog: o.backlog,
      seconds: Math.round(seconds * 100) / 100,
      perS: Math.round(o.backlog / seconds),
      replicaStats,
      monitor: window,
      server: serverStats,
      verified: {
        ok:
          counts.orders === expected &&
          counts.views === expected &&
          counts.projected === expected &&
          counts.counted === expected &&
          counts.dead === 0,
        expected,
        orders: counts.orders,
        views: counts.views,
        projected: counts.projected,
        statsCounted: counts.counted,
        deadLetters: counts.dead,
      },
    };
  } finally {
    monitor.close();
    await Promise.all(replicas.map((r) => r.stop()));
    await queue.close();
    redis.disconnect();
    await pool.end();
    await cleanup(config);
  }
}
