import { loadavg } from 'node:os';
import { jobsThatExist } from '../../shared/http/enqueue.ts';
import { Redis } from 'ioredis';
import { loadConfig } from '../../shared/config/config.ts';
import { migrate } from '../../shared/db/migrate.ts';
import { createPool } from '../../shared/db/pool.ts';
import { createOrdersQueue, type OrdersQueue } from '../../modules/orders/queue.ts';
import { isolatedEnv } from '../../test/support/env.ts';
import { cleanup } from '../../test/support/platform.ts';
import { freePort } from '../../test/support/redis-server.ts';
import { orderBody } from '../load.ts';
import { createMonitor, type ProcessMonitor } from '../monitor.ts';
import { runOpenLoopInThread } from '../open-loop-thread.ts';
import { describeOpenLoop, runOpenLoop, type OpenLoopResult } from '../open-loop.ts';
import { startReplica, until, type CgroupLayout, type Replica } from './replica.ts';
import { MODULES } from '../../modules/registry.ts';

/**
 * HTTP ingest with API replicas in CPU-limited cgroups (like pods with `limits.cpu`): for each replica
 * count, the replicas are started (`api/main.ts`, a port each), warmed up, then the offered rate is
 * stepped up with the open-loop generator (bench/open-loop.ts, requests spread round-robin over the
 * replicas, latency from each request's scheduled time) until p99 exceeds the target or a request
 * fails. No workers run: every 202 stays a job in the orders queue, and the queue is counted at the end.
 */

export interface ApiScalingOptions {
  layout: CgroupLayout;
  /** API replica counts, e.g. [1, 2, 3]. */
  replicaCounts: number[];
  /** CPU limit of each replica, cores (0.5 = 500m). */
  cores: number;
  /** Offered rate step per replica, req/s: the steps are k × step × replicas. @defaultValue 250 */
  stepPerReplica?: number;
  /** Length of each step, seconds. @defaultValue 5 */
  stepSeconds?: number;
  /** Highest rate tried per replica, req/s (a bound for a machine that never fails). @defaultValue 4000 */
  maxPerReplica?: number;
  /** When the first step fails, the rate is halved down to this per replica, req/s. @defaultValue 25 */
  minPerReplica?: number;
  /** The latency objective: a step passes with p99 ≤ this and no error. @defaultValue 10 */
  p99TargetMs?: number;
  /** Warm-up (JIT, connections, pools) per replica count: seconds at `warmupPerReplica` req/s each. @defaultValue 10 */
  warmupSeconds?: number;
  /** @defaultValue 300 (a 0.5-core replica compiles slowly: JIT warm-up needs ~10 s of traffic) */
  warmupPerReplica?: number;
  /**
   * A failing step is run again once and fails only if both attempts fail (the machine is shared:
   * one noisy 5 s window should not decide). Both attempts are kept. @defaultValue true
   */
  confirmFailures?: boolean;
  /** Items per order. @defaultValue 3 */
  orderSize?: number;
  env?: Record<string, string>;
  /** Compiled platform (bench/scaling/build.ts): replicas run `node <dir>/api/main.js` like the image; else tsx. */
  compiledDir?: string;
  log: (line: string) => void;
}

export interface ApiReplicaStat {
  label: string;
  cpuCores: number;
  /** Share of CFS periods in which the replica hit its quota. */
  throttledPct: number;
  throttledMs: number;
}

/** One offered rate, measured. */
export interface ApiStep {
  offeredPerS: number;
  attempt: number;
  passed: boolean;
  load: OpenLoopResult;
  replicas: ApiReplicaStat[];
  redisCores: number;
  /** The bench process (generator) and the whole machine, cores. */
  benchCores: number;
  machineCores: number;
  loadAverage: number;
}

export interface ApiScalingRow {
  replicas: number;
  cores: number;
  /** Highest offered rate with p99 ≤ target and no error (null: not even the first step). */
  best: ApiStep | null;
  /** The failing step just above it (null: the bound was reached). */
  next: ApiStep | null;
  /** Every step run, in order (p99 and achieved only), for the record. */
  steps: { offeredPerS: number; attempt: number; p99: number; achievedPerS: number; passed: boolean }[];
  verified: {
    ok: boolean;
    /** 202 responses (unique order ids). */
    accepted: number;
    /** Jobs in the orders queue. */
    jobs: number;
    /** Accepted ids with no job: a lost order (must be 0). */
    missing: number;
    /** Requests that timed out or failed client-side: the only requests that may have a job without a 202. */
    unanswered: number;
  };
}

const round2 = (n: number) => Math.round(n * 100) / 100;

/** Jobs in the queue (every state) and which of `ids` have none, via a pipeline of EXISTS. */
async function countJobs(
  queue: OrdersQueue,
  ids: readonly string[],
): Promise<{ jobs: number; missing: number }> {
  const counts = await queue.getJobCounts();
  const jobs = Object.values(counts).reduce((a, b) => a + b, 0);
  let present = 0;
  for (let i = 0; i < ids.length; i += 5_000)
    present += (await jobsThatExist(queue, ids.slice(i, i + 5_000))).size;
  const missing = ids.length - present;
  return { jobs, missing };
}

async function measureStep(
  o: Required<Omit<ApiScalingOptions, 'env' | 'log' | 'layout' | 'replicaCounts' | 'compiledDir'>>,
  urls: readonly string[],
  replicas: readonly Replica[],
  monitor: ProcessMonitor,
  ratePerS: number,
  attempt: number,
  body: string,
  ids: string[],
): Promise<ApiStep> {
  const before = replicas.map((r) => r.group.stat());
  monitor.window();
  const { result: load, acceptedIds } = await runOpenLoopInThread({
    urls,
    ratePerS,
    durationS: o.stepSeconds,
    path: '/v1/orders',
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: 'Bearer dev' },
    body,
    // A replica far past its limit queues without bound: 5 s of offered load is plenty to see that.
    timeoutMs: 5_000,
    drainMs: 10_000,
  });
  ids.push(...acceptedIds);
  const w = monitor.window();
  const cpu = (label: string) => w.processes.find((p) => p.label === label)?.cpuCores ?? 0;
  const stats = replicas.map((r, i) => {
    const s = r.group.stat();
    const periods = s.periods - before[i]!.periods;
    return {
      label: r.label,
      cpuCores: cpu(r.label),
      throttledPct:
        periods > 0 ? Math.round(((s.throttled - before[i]!.throttled) / periods) * 1000) / 10 : 0,
      throttledMs: Math.round(s.throttledMs - before[i]!.throttledMs),
    };
  });
  const clean =
    load.errors === 0 &&
    load.timeouts === 0 &&
    Object.keys(load.rejected).length === 0 &&
    load.accepted === load.scheduled;
  return {
    offeredPerS: ratePerS,
    attempt,
    passed: clean && load.latencyMs.p99 <= o.p99TargetMs,
    load,
    replicas: stats,
    redisCores: cpu('redis'),
    benchCores: load.generatorCpuCores,
    machineCores: w.machineCpuCores,
    loadAverage: round2(loadavg()[0]!),
  };
}

/** One replica count: start, warm up, step the rate up until p99 > target, verify, tear down. */
async function scaleOne(
  o: Required<Omit<ApiScalingOptions, 'env' | 'log' | 'layout' | 'replicaCounts' | 'compiledDir'>> & {
    layout: CgroupLayout;
    env: Record<string, string>;
    compiledDir: string | undefined;
    log: (line: string) => void;
  },
  n: number,
): Promise<ApiScalingRow> {
  const env = isolatedEnv({
    LOG_LEVEL: 'warn',
    API_KEYS: '',
    RATE_LIMIT_MAX: '1000000000',
    RATE_LIMIT_READ_MAX: '1000000000',
    API_MAX_BACKLOG: '0',
    SHUTDOWN_GRACE_MS: '10000',
    ...o.env,
  });
  const config = loadConfig(env, { modules: MODULES });
  const pool = createPool({ ...config.database, poolMax: 1 });
  await migrate(pool, config.database.schema, MODULES);
  await pool.end();
  const redis = new Redis(config.redis.url, { maxRetriesPerRequest: null });
  const queue = createOrdersQueue(redis, config.redis.queuePrefix);
  const monitor = createMonitor();
  monitor.watchGroup('redis', ['redis-server']);
  const replicas: Replica[] = [];
  const ids: string[] = [];
  const steps: ApiStep[] = [];
  try {
    const urls: string[] = [];
    for (let i = 1; i <= n; i++) {
      const port = await freePort();
      const r = startReplica(
        o.layout,
        `api-${i}`,
        o.cores,
        'api/main.ts',
        { ...env, PORT: String(port) },
        o.compiledDir,
      );
      replicas.push(r);
      urls.push(`http://127.0.0.1:${port}`);
    }
    await Promise.all(
      replicas.map((r, i) =>
        until(
          `${r.label} /readyz`,
          90_000,
          () =>
            fetch(`${urls[i]!}/readyz`).then(
              (res) => res.status === 200,
              () => false,
            ),
          [r],
        ),
      ),
    );
    for (const r of replicas) monitor.watch(r.label, r.child.pid!);
    const body = JSON.stringify(orderBody(`api-scaling-${n}`, o.orderSize));
    const warm = await runOpenLoop({
      urls,
      ratePerS: o.warmupPerReplica * n,
      durationS: o.warmupSeconds,
      path: '/v1/orders',
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: 'Bearer dev' },
      body,
      acceptedIds: ids,
    });
    o.log(`${n} API replica(s) at ${o.cores} core: warm-up ${describeOpenLoop(warm)}`);
    let best: ApiStep | null = null;
    let next: ApiStep | null = null;
    const attempt = async (rate: number): Promise<ApiStep> => {
      let step = await measureStep(o, urls, replicas, monitor, rate, 1, body, ids);
      steps.push(step);
      o.log(`  ${describeStep(step)}`);
      if (!step.passed && o.confirmFailures) {
        step = await measureStep(o, urls, replicas, monitor, rate, 2, body, ids);
        steps.push(step);
        o.log(`  again: ${describeStep(step)}`);
      }
      return step;
    };
    for (let k = 1; k * o.stepPerReplica <= o.maxPerReplica; k++) {
      const step = await attempt(k * o.stepPerReplica * n);
      if (step.passed) best = step;
      else {
        next = step;
        break;
      }
    }
    // Not even the first step: halve the rate until one passes (or the floor), so the row says where
    // the objective holds rather than only that the first step missed it.
    for (let perReplica = o.stepPerReplica / 2; !best && perReplica >= o.minPerReplica; perReplica /= 2) {
      const step = await attempt(Math.round(perReplica * n));
      if (step.passed) best = step;
      else next = step;
    }
    const unanswered = [warm, ...steps.map((s) => s.load)].reduce((a, l) => a + l.errors + l.timeouts, 0);
    const unique = new Set(ids).size;
    const { jobs, missing } = await countJobs(queue, ids);
    const verified = {
      ok: unique === ids.length && missing === 0 && jobs >= unique && jobs - unique <= unanswered,
      accepted: unique,
      jobs,
      missing,
      unanswered,
    };
    o.log(
      `  verified: ${verified.ok} (${unique} accepted, ${jobs} jobs in the queue, ${missing} missing, ${unanswered} unanswered)`,
    );
    return {
      replicas: n,
      cores: o.cores,
      best,
      next,
      steps: steps.map((s) => ({
        offeredPerS: s.offeredPerS,
        attempt: s.attempt,
        p99: s.load.latencyMs.p99,
        achievedPerS: s.load.achievedPerS,
        passed: s.passed,
      })),
      verified,
    };
  } finally {
    monitor.close();
    await Promise.all(replicas.map((r) => r.stop(15_000)));
    await queue.close();
    redis.disconnect();
    await cleanup(config);
  }
}

function describeStep(s: ApiStep): string {
  return `${s.passed ? 'pass' : 'FAIL'} ${describeOpenLoop(s.load)}; replicas ${s.replicas
    .map((r) => `${r.cpuCores} cores thr ${r.throttledPct}%`)
    .join(' | ')}; redis ${s.redisCores}, machine ${s.machineCores}, load ${s.loadAverage}`;
}

/**
 * For each replica count in turn: the highest offered rate served at p99 ≤ target with no error, the
 * step above it, and a count of the queue against the 202s.
 * @example const rows = await runApiScaling({ layout, replicaCounts: [1, 2, 3], cores: 0.5, log });
 */
export async function runApiScaling(options: ApiScalingOptions): Promise<ApiScalingRow[]> {
  const o = {
    layout: options.layout,
    cores: options.cores,
    stepPerReplica: options.stepPerReplica ?? 250,
    stepSeconds: options.stepSeconds ?? 5,
    maxPerReplica: options.maxPerReplica ?? 4_000,
    minPerReplica: options.minPerReplica ?? 25,
    p99TargetMs: options.p99TargetMs ?? 10,
    warmupSeconds: options.warmupSeconds ?? 10,
    warmupPerReplica: options.warmupPerReplica ?? 300,
    confirmFailures: options.confirmFailures ?? true,
    orderSize: options.orderSize ?? 3,
    env: options.env ?? {},
    compiledDir: options.compiledDir,
    log: options.log,
  };
  const rows: ApiScalingRow[] = [];
  for (const n of options.replicaCounts) rows.push(await scaleOne(o, n));
  return rows;
}

/**
 * The markdown table of {@link runApiScaling}'s rows (for `scaling-latest.md` and the README). A step
 * whose generator left requests late (lag p99 over half the objective) is marked: its latency says as
 * much about the load generator's CPU as about the API.
 */
export function renderApiScalingTable(rows: readonly ApiScalingRow[], p99TargetMs = 10): string {
  const late = (s: ApiStep) =>
    s.load.lagMs.p99 > p99TargetMs / 2 ? ` ⚠ generator late (lag p99 ${s.load.lagMs.p99} ms)` : '';
  const cell = (s: ApiStep | null) => {
    if (!s) return '—';
    const l = s.load;
    return `${s.offeredPerS}/s → ${l.achievedPerS}/s, ${l.latencyMs.p50} / ${l.latencyMs.p99} ms${late(s)}`;
  };
  const cpu = (s: ApiStep | null) =>
    s ? s.replicas.map((r) => `${r.cpuCores} (${r.throttledPct}%)`).join(', ') : '—';
  const env = (s: ApiStep | null) =>
    s ? `${s.redisCores} · ${s.benchCores} · ${s.machineCores} (load ${s.loadAverage})` : '—';
  const base = rows[0]?.best ? rows[0].best.offeredPerS / rows[0].replicas : 0;
  const head = [
    `| API replicas | highest offered rate at p99 ≤ ${p99TargetMs} ms, no error | per replica | × linear | at it: offered → achieved, p50 / p99 | replica CPU cores (throttled periods) | Redis · generator · machine cores (load avg) | step above: offered → achieved, p50 / p99 | its replica CPU (throttled) | verified: 202s = jobs in the queue |`,
    '| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |',
  ];
  const lines = rows.map((r) => {
    const b = r.best;
    const lowest = Math.min(...r.steps.map((s) => s.offeredPerS));
    const rate = b ? `**${b.offeredPerS}/s**` : `not met (down to ${lowest}/s)`;
    const per = b ? `${Math.round(b.offeredPerS / r.replicas)}/s` : '—';
    const eff = b && base > 0 ? (b.offeredPerS / (r.replicas * base)).toFixed(2) : '—';
    const v = r.verified;
    const verified = `${v.ok ? 'yes' : 'NO'} (${v.accepted} = ${v.jobs}${v.missing ? `, ${v.missing} missing` : ''})`;
    return `| ${r.replicas} × ${r.cores} core | ${rate} | ${per} | ${eff} | ${cell(b)} | ${cpu(b)} | ${env(b ?? r.next)} | ${cell(r.next)} | ${cpu(r.next)} | ${verified} |`;
  });
  return [...head, ...lines].join('\n');
}
