import { Redis } from 'ioredis';
import { loadConfig } from '../../shared/config/config.ts';
import { migrate } from '../../shared/db/migrate.ts';
import { createPool, type Pool } from '../../shared/db/pool.ts';
import { createOrdersQueue, PLACE_ORDER_JOB } from '../../modules/orders/queue.ts';
import { commandJobOptions } from '../../shared/queue/command-queue.ts';
import { isolatedEnv } from '../../test/support/env.ts';
import { cleanup } from '../../test/support/platform.ts';
import { freePort } from '../../test/support/redis-server.ts';
import { makeOrderJobs } from '../baselines/naive-orders.ts';
import { createAutoscaler, type ScalerSpec } from './keda.ts';
import { startReplica, until, type CgroupLayout, type Replica } from './replica.ts';
import { MODULES } from '../../modules/registry.ts';

export interface ReplayOptions {
  layout: CgroupLayout;
  spec: ScalerSpec;
  /** Cluster seconds per real second: intervals and windows run this much faster, stated in the output. */
  compress: number;
  /** Replicas this machine can host at the most (the ScaledObject's max may be far above). */
  maxReplicas: number;
  /** CPU of each order-worker replica (the pod limit). */
  cores: number;
  /** CPU of the one process relaying and projecting events (not scaled here). */
  eventsCores: number;
  /** Orders arriving per second during the burst, and for how many seconds. */
  burstPerS: number;
  burstSeconds: number;
  /** false: the same burst with the replica count fixed at minReplicaCount (the comparison). */
  autoscale: boolean;
  /** Run replicas from this compiled output (bench/scaling/build.ts) instead of through tsx. */
  compiledDir?: string;
  log: (line: string) => void;
}

export interface TimelinePoint {
  /** Real seconds since the burst began. */
  t: number;
  backlog: number;
  replicas: number;
  /** Orders decided per second over the last sample interval. */
  decidedPerS: number;
}

export interface ReplayResult {
  autoscale: boolean;
  orders: number;
  /** Real seconds from the burst's start until every order was decided and projected. */
  drainSeconds: number;
  peakReplicas: number;
  /** Median seconds from starting a replica to its worker consuming (what a pod's start costs here). */
  replicaStartSeconds: number;
  /** Scale decisions that reversed the previous one within the scale-down window (flapping). */
  reversals: number;
  timeline: TimelinePoint[];
  decisions: { t: number; backlog: number; from: number; to: number }[];
  verified: {
    ok: boolean;
    orders: number;
    projected: number;
    /** Orders the daily stats count. */
    statsCounted: number;
    /** Orders with more than one decision event. */
    duplicates: number;
    deadLetters: number;
  };
}

async function counts(pool: Pool) {
  return (
    await pool.query<{ orders: number; projected: number; dead: number }>(
      `SELECT (SELECT count(*) FROM orders)::int AS orders, (SELECT count(*) FROM projection_inbox)::int AS projected,
              (SELECT count(*) FROM dead_letters)::int AS dead`,
    )
  ).rows[0]!;
}

/**
 * Every order decided and projected exactly once: one decision event per order in the outbox, one
 * view per order, and the stats counting each order once (a doubled projection would count twice).
 */
async function reconcile(pool: Pool, total: number): Promise<ReplayResult['verified']> {
  const r = (
    await pool.query<{ orders: number; views: number; counted: number; doubled: number; dead: number }>(
      `SELECT (SELECT count(*) FROM orders)::int AS orders,
              (SELECT count(*) FROM order_view)::int AS views,
              (SELECT coalesce(sum(completed_count + rejected_count), 0) FROM daily_stats)::int AS counted,
              (SELECT count(*) FROM (SELECT aggregate_id FROM outbox GROUP BY aggregate_id HAVING count(*) > 1) d)::int
                AS doubled,
              (SELECT count(*) FROM dead_letters)::int AS dead`,
    )
  ).rows[0]!;
  return {
    ok: r.orders === total && r.views === total && r.counted === total && r.doubled === 0 && r.dead === 0,
    orders: r.orders,
    projected: r.views,
    statsCounted: r.counted,
    duplicates: r.doubled,
    deadLetters: r.dead,
  };
}

/**
 * A burst of orders against order-worker replicas that KEDA's rule starts and stops: every HPA sync
 * period (time-compressed) the backlog is read from the API's `/v1/scaling/orders` — the trigger the
 * shipped ScaledObject uses — the decision function says how many replicas, and real CPU-limited
 * replicas are started, or stopped with SIGTERM (they finish their in-flight jobs first). Records the
 * timeline and reconciles every order at the end.
 */
export async function replayBurst(o: ReplayOptions): Promise<ReplayResult> {
  const port = await freePort();
  const env = isolatedEnv({
    LOG_LEVEL: 'warn',
    METRICS_PORT: '0',
    SHUTDOWN_GRACE_MS: '20000',
    PORT: String(port),
  });
  const config = loadConfig(env, { modules: MODULES });
  const pool = createPool({ ...config.database, poolMax: 2 });
  await migrate(pool, config.database.schema, MODULES);
  const redis = new Redis(config.redis.url, { maxRetriesPerRequest: null });
  const queue = createOrdersQueue(redis, config.redis.queuePrefix);
  const spec = { ...o.spec, maxReplicas: Math.min(o.spec.maxReplicas, o.maxReplicas) };
  const autoscaler = createAutoscaler(spec);
  const fixed: Replica[] = [];
  const orderReplicas: Replica[] = [];
  const stopping: Promise<unknown>[] = [];
  let seq = 0;
  /** Start times of replicas whose worker is not consuming yet, and the start-up times seen. */
  const starting: number[] = [];
  const startupS: number[] = [];
  const addReplica = () => {
    orderReplicas.push(
      startReplica(
        o.layout,
        `orders-${++seq}`,
        o.cores,
        'workers/main.ts',
        { ...env, WORKER_KINDS: 'orders' },
        o.compiledDir,
      ),
    );
    starting.push(performance.now());
  };
  /** Replicas whose worker registered on the queue since the last look: their start-up is over. */
  const noteStarted = async () => {
    const consuming = await queue.getWorkersCount();
    while (starting.length > 0 && consuming >= orderReplicas.length - starting.length + 1) {
      startupS.push((performance.now() - starting.shift()!) / 1000);
    }
  };
  try {
    // The API (for its scaling endpoint) and the event side run at fixed size, off the scaled cgroups.
    fixed.push(startReplica(o.layout, 'api', 1, 'api/main.ts', env, o.compiledDir));
    fixed.push(
      startReplica(
        o.layout,
        'events',
        o.eventsCores,
        'workers/main.ts',
        { ...env, WORKER_KINDS: 'outbox,projections' },
        o.compiledDir,
      ),
    );
    const url = `http://127.0.0.1:${port}/v1/scaling/orders`;
    const readBacklog = async () => {
      const res = await fetch(url, { headers: { authorization: 'Bearer dev' } });
      if (!res.ok) throw new Error(`${url}: ${res.status}`);
      return ((await res.json()) as { backlog: number }).backlog;
    };
    await until(
      'the API to answer',
      60_000,
      () =>
        readBacklog().then(
          () => true,
          () => false,
        ),
      fixed,
    );
    for (let i = 0; i < Math.max(1, spec.minReplicas); i++) addReplica();
    // The burst meets the minimum already running, as it would in a cluster.
    await until(
      'the minimum replicas to consume',
      120_000,
      async () => {
        await noteStarted();
        return starting.length === 0;
      },
      [...fixed, ...orderReplicas],
    );

    const total = o.burstPerS * o.burstSeconds;
    const jobs = makeOrderJobs(total, 'burst', 3);
    const opts = commandJobOptions({ attempts: 5, backoffMs: 1_000, keepCompletedSeconds: 3_600 });
    const t0 = performance.now();
    const elapsed = () => (performance.now() - t0) / 1000;
    // The burst: orders arrive at o.burstPerS, in 10 chunks a second.
    const arriving = (async () => {
      const chunk = Math.ceil(o.burstPerS / 10);
      for (let sent = 0, k = 0; sent < total; k++) {
        const wait = k * 100 - (performance.now() - t0);
        if (wait > 0) await new Promise((r) => setTimeout(r, wait));
        const part = jobs.slice(sent, sent + chunk);
        await queue.addBulk(
          part.map((data) => ({ name: PLACE_ORDER_JOB, data, opts: { ...opts, jobId: data.orderId } })),
        );
        sent += part.length;
      }
    })();

    const timeline: TimelinePoint[] = [];
    const decisions: ReplayResult['decisions'] = [];
    let lastDecided = 0;
    let lastSampleT = 0;
    let nextSyncT = 0;
    let drainSeconds = 0;
    const syncRealS = spec.hpaSyncPeriodS / o.compress;
    const settleS = ((spec.scaleDown.stabilizationWindowSeconds ?? 0) + spec.hpaSyncPeriodS * 2) / o.compress;
    for (;;) {
      await new Promise((r) => setTimeout(r, 250));
      const t = elapsed();
      const dead = [...fixed, ...orderReplicas].find(
        (r) => r.child.exitCode !== null && r.child.signalCode === null && !stopping.length,
      );
      if (dead && dead.child.exitCode !== 0)
        throw new Error(`${dead.label} exited ${dead.child.exitCode}:\n${dead.tail.slice(-10).join('\n')}`);
      const c = await counts(pool);
      const backlog = await readBacklog();
      if (starting.length > 0) await noteStarted();
      timeline.push({
        t: Math.round(t * 100) / 100,
        backlog,
        replicas: orderReplicas.length,
        decidedPerS: Math.round((c.orders - lastDecided) / Math.max(0.001, t - lastSampleT)),
      });
      lastDecided = c.orders;
      lastSampleT = t;
      if (o.autoscale && t >= nextSyncT) {
        nextSyncT = t + syncRealS;
        const current = orderReplicas.length;
        const desired = autoscaler.decide(t * o.compress, backlog, current);
        if (desired !== current) {
          decisions.push({ t: Math.round(t * 100) / 100, backlog, from: current, to: desired });
          o.log(`  t=${t.toFixed(1)} s backlog ${backlog}: ${current} → ${desired} replicas`);
        }
        while (orderReplicas.length < desired) addReplica();
        while (orderReplicas.length > desired) stopping.push(orderReplicas.pop()!.stop());
      }
      if (drainSeconds === 0 && c.orders >= total && c.projected >= total) {
        drainSeconds = Math.round(t * 100) / 100;
        o.log(`  drained ${total} orders in ${drainSeconds} s`);
      }
      // Done once drained and (autoscaled) back at the minimum after the scale-down window.
      const atMin = orderReplicas.length <= Math.max(1, spec.minReplicas);
      if (
        drainSeconds > 0 &&
        (!o.autoscale || (atMin && t > drainSeconds + 1) || t > drainSeconds + settleS + 5)
      )
        break;
      if (t > 900) throw new Error('the burst did not drain within 15 minutes');
    }
    await arriving;
    let reversals = 0;
    for (let i = 1; i < decisions.length; i++) {
      const a = decisions[i - 1]!;
      const b = decisions[i]!;
      const windowS = (spec.scaleDown.stabilizationWindowSeconds ?? 0) / o.compress;
      if (Math.sign(a.to - a.from) !== Math.sign(b.to - b.from) && b.t - a.t < windowS && b.to < b.from)
        reversals += 1;
    }
    await Promise.all(stopping);
    return {
      autoscale: o.autoscale,
      orders: total,
      drainSeconds,
      peakReplicas: Math.max(...timeline.map((p) => p.replicas)),
      replicaStartSeconds:
        Math.round(([...startupS].sort((a, b) => a - b)[Math.floor(startupS.length / 2)] ?? 0) * 10) / 10,
      reversals,
      timeline,
      decisions,
      verified: await reconcile(pool, total),
    };
  } finally {
    await Promise.all([...orderReplicas, ...fixed].map((r) => r.stop()));
    await Promise.all(stopping);
    await queue.close();
    redis.disconnect();
    await pool.end();
    await cleanup(config);
  }
}
