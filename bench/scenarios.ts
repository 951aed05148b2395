import { OrdersQueues } from '../modules/orders/queue.ts';
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { createPool, type Pool } from '../shared/db/pool.ts';
import type { BenchBus, BenchOptions } from './cli.ts';
import { enqueueBatches, orderBody, runLoad, type LoadResult } from './load.ts';
import type { MonitorWindow, ProcessMonitor } from './monitor.ts';
import type { Progress } from './progress.ts';
import { createStack, type Stack } from './stack.ts';
import { phaseTiming, verifyRun, waitProjected, type PhaseTiming, type Verification } from './verify.ts';

export interface Env {
  options: BenchOptions;
  monitor: ProcessMonitor;
  progress: Progress;
  cpuProfDir: string | undefined;
  /** Per stack name: the monotonic time (µs, the clock of V8 profiles) its measured phases began. */
  profileFrom: Map<string, number>;
  /** Stacks running now, so an interrupted run can still stop their processes and drop what they made. */
  live: Set<Stack>;
}

/** Now on the monotonic clock V8's CPU profiles use (CLOCK_MONOTONIC, µs). */
const monotonicUs = () => Number(process.hrtime.bigint() / 1_000n);

/** A backlog drained by the workers: orders / (last projected − start). */
export interface Drain {
  orders: number;
  drainMs: number;
  perS: number;
  monitor: MonitorWindow;
}

/** A load phase with the timing of its orders through the pipeline. */
export interface E2ePhase {
  load: LoadResult;
  timing: PhaseTiming;
  monitor: MonitorWindow;
}

export interface ScenarioResult {
  name: string;
  bus: BenchBus;
  workers: number;
  apiReplicas: number;
  /** `unavailable`: the bus (Kafka/RabbitMQ/SQS) never carried the warm-up orders — tolerated and reported. */
  status: 'ok' | 'failed' | 'unavailable';
  error?: string;
  drain?: Drain;
  fixedRate?: E2ePhase;
  saturation?: E2ePhase;
  verification?: Verification;
}

export interface ApiPhaseResult {
  rates: { load: LoadResult; monitor: MonitorWindow }[];
  backlogDrain: Drain;
  verification: Verification;
}

/** Wall time allowed to project `n` orders: generous, but a stuck pipeline fails instead of hanging. */
const projectTimeout = (n: number) => 60_000 + n * 10;

/** The bench's own view into a stack: its database and its orders queue. */
interface Probe {
  pool: Pool;
  queue: Queue;
  /** Order jobs not finished yet (waiting, paused, active, delayed, prioritized). */
  pendingJobs(): Promise<number>;
  close(): Promise<void>;
}

function probe(stack: Stack): Probe {
  const pool = createPool({ ...stack.config.database, poolMax: 2, statementTimeoutMs: 120_000 });
  const redis = new Redis(stack.config.redis.url, { maxRetriesPerRequest: null });
  const queue = new Queue(OrdersQueues.commands, {
    connection: redis,
    prefix: stack.config.redis.queuePrefix,
  });
  return {
    pool,
    queue,
    async pendingJobs() {
      const counts = await queue.getJobCounts(
        'waiting',
        'paused',
        'active',
        'delayed',
        'prioritized',
        'waiting-children',
      );
      return Object.values(counts).reduce((a, b) => a + b, 0);
    },
    async close() {
      await queue.close().catch(() => undefined);
      redis.disconnect();
      await pool.end().catch(() => undefined);
    },
  };
}

/**
 * Requests whose outcome the client never learned: errors, non-2xx, and at most one in-flight
 * request per connection cut off when a load phase ends (the server may still have enqueued it).
 */
const unknownOutcomes = (loads: readonly LoadResult[]) =>
  loads.reduce((n, l) => n + l.errors + l.non2xx + l.connections, 0);

/**
 * The API on its own (no workers yet): enqueue latency at each offered rate and at saturation, the
 * API's memory and CPU per rate. Then one worker process is started on the backlog those requests left
 * — the "large backlog" drain whose worker memory is reported.
 */
export async function runApiPhase(env: Env): Promise<ApiPhaseResult> {
  const { options, monitor, progress } = env;
  const stack = createStack({
    name: 'api-phase',
    bus: 'bullmq',
    logLevel: options.logLevel,
    monitor,
    cpuProfDir: env.cpuProfDir,
    env: options.platformEnv,
  });
  env.live.add(stack);
  const p = probe(stack);
  const { pool } = p;
  const accepted: string[] = [];
  const loads: LoadResult[] = [];
  try {
    await stack.startApi(1);
    const body = (tag: string) => JSON.stringify(orderBody(`${tag}-0`, options.orderSize));
    const base = { urls: stack.apiUrls, connections: options.connections, progress };
    // JIT warm-up, not reported.
    loads.push(
      await runLoad(
        { ...base, title: 'api warm-up', durationS: 1, ratePerS: 500, body: body('apiwarm') },
        accepted,
      ),
    );
    monitor.window();
    env.profileFrom.set('api-phase', monotonicUs());
    const rates: ApiPhaseResult['rates'] = [];
    for (const rate of [...options.ratesPerS, undefined]) {
      const title = rate ? `api @ ${rate} req/s` : 'api @ saturation';
      progress.step(title);
      const load = await runLoad(
        { ...base, title, durationS: options.durationS, ratePerS: rate, body: body(`api${rate ?? 'sat'}`) },
        accepted,
      );
      loads.push(load);
      rates.push({ load, monitor: monitor.window() });
      progress.done(
        `${load.acceptedPerS} accepted/s, p50 ${load.latencyMs.p50} ms, p99 ${load.latencyMs.p99} ms`,
      );
      stack.assertAlive();
    }
    progress.step(`draining the backlog of ${accepted.length} orders with 1 worker process`);
    const started = Date.now();
    await stack.startWorkers(1);
    await waitProjected(pool, accepted.length, {
      label: 'backlog drain',
      timeoutMs: projectTimeout(accepted.length),
      progress,
      pendingJobs: p.pendingJobs,
      check: stack.assertAlive,
    });
    const drainMonitor = monitor.window();
    // From the first decision (the worker's start-up is not drain time) to the last projection.
    const { rows } = await pool.query<{ first: number; last: number }>(
      `SELECT (extract(epoch FROM min(decided_at)) * 1000)::float8 AS first,
              (SELECT extract(epoch FROM max(processed_at)) * 1000 FROM projection_inbox)::float8 AS last FROM orders`,
    );
    const first = rows[0]?.first ?? started;
    const drainMs = Math.round((rows[0]?.last ?? Date.now()) - first);
    const backlogDrain = {
      orders: accepted.length,
      drainMs,
      perS: Math.round(accepted.length / (drainMs / 1000)),
      monitor: drainMonitor,
    };
    progress.done(`${backlogDrain.perS} orders/s end to end`);
    const verification = await verifyRun(pool, accepted, unknownOutcomes(loads));
    return { rates, backlogDrain, verification };
  } finally {
    await p.close();
    await stack.close();
    env.live.delete(stack);
  }
}

async function warmUp(
  env: Env,
  stack: Stack,
  p: Probe,
  accepted: string[],
  loadsSeen: LoadResult[],
): Promise<void> {
  const { options, progress } = env;
  const wait = (label: string) =>
    waitProjected(p.pool, accepted.length, {
      label,
      timeoutMs: 90_000,
      progress,
      pendingJobs: p.pendingJobs,
      check: stack.assertAlive,
    });
  const warm: string[] = [];
  await enqueueBatches(stack.apiUrls[0]!, 20, 'warm', options.orderSize, warm, progress);
  accepted.push(...warm);
  // The first orders through prove every hop is up: order worker, relay, bus, projections.
  await wait('warm-up');
  const body = JSON.stringify(orderBody('jit-0', options.orderSize));
  loadsSeen.push(
    await runLoad(
      {
        title: 'warm-up',
        urls: stack.apiUrls,
        connections: options.connections,
        durationS: 1,
        ratePerS: options.e2eRatePerS,
        body,
        progress,
      },
      accepted,
    ),
  );
  await wait('warm-up');
}

/** Enqueues a backlog while the orders queue is paused, then times its drain from the resume. */
async function drainBacklog(env: Env, stack: Stack, p: Probe, accepted: string[]): Promise<Drain> {
  const { options, monitor, progress } = env;
  await p.queue.pause();
  const backlog: string[] = [];
  await enqueueBatches(stack.apiUrls[0]!, options.backlog, 'drain', options.orderSize, backlog, progress);
  accepted.push(...backlog);
  monitor.window();
  const resumedAt = Date.now();
  await p.queue.resume();
  await waitProjected(p.pool, accepted.length, {
    label: 'drain',
    timeoutMs: projectTimeout(backlog.length),
    progress,
    pendingJobs: p.pendingJobs,
    check: stack.assertAlive,
  });
  const window = monitor.window();
  const timing = await phaseTiming(p.pool, 'drain');
  const drainMs = Math.max(1, Math.round(timing.lastProjectedAt - resumedAt));
  return {
    orders: backlog.length,
    drainMs,
    perS: Math.round(backlog.length / (drainMs / 1000)),
    monitor: window,
  };
}

async function loadPhase(
  env: Env,
  stack: Stack,
  p: Probe,
  accepted: string[],
  loads: LoadResult[],
  tag: string,
  ratePerS: number | undefined,
): Promise<E2ePhase> {
  const { options, monitor, progress } = env;
  monitor.window();
  const title = `${tag} @ ${ratePerS ? `${ratePerS} req/s` : 'saturation'}`;
  const load = await runLoad(
    {
      title,
      urls: stack.apiUrls,
      connections: options.connections * stack.apiUrls.length,
      durationS: options.durationS,
      ratePerS,
      body: JSON.stringify(orderBody(`${tag}-0`, options.orderSize)),
      progress,
    },
    accepted,
  );
  loads.push(load);
  await waitProjected(p.pool, accepted.length, {
    label: `${tag} tail`,
    timeoutMs: projectTimeout(load.accepted),
    progress,
    pendingJobs: p.pendingJobs,
    check: stack.assertAlive,
  });
  const window = monitor.window();
  return { load, timing: await phaseTiming(p.pool, tag), monitor: window };
}

/**
 * One end-to-end configuration: warm-up, a backlog drain (comparable with the baselines), an HTTP run
 * at a fixed offered rate (end-to-end latency) and one at saturation (end-to-end throughput), then
 * every order counted. A bus that cannot start is reported as a failed scenario, not a crash.
 */
export async function runScenario(
  env: Env,
  bus: BenchBus,
  workers: number,
  apiReplicas: number,
): Promise<ScenarioResult> {
  const { options, progress } = env;
  const name = `${bus} ${workers}w/${apiReplicas}api`;
  const result: ScenarioResult = { name, bus, workers, apiReplicas, status: 'failed' };
  const slug = `${bus}-${workers}w-${apiReplicas}api`;
  const stack = createStack({
    name: slug,
    bus,
    logLevel: options.logLevel,
    monitor: env.monitor,
    cpuProfDir: env.cpuProfDir,
    env: options.platformEnv,
  });
  env.live.add(stack);
  const p = probe(stack);
  const accepted: string[] = [];
  const loads: LoadResult[] = [];
  let started = false;
  try {
    progress.step(`scenario ${name}: starting processes`);
    await stack.startApi(apiReplicas);
    await stack.startWorkers(workers);
    await warmUp(env, stack, p, accepted, loads);
    started = true;
    env.profileFrom.set(slug, monotonicUs());
    progress.step(`scenario ${name}: drain of ${options.backlog} orders`);
    result.drain = await drainBacklog(env, stack, p, accepted);
    progress.done(`drain: ${result.drain.perS} orders/s`);
    progress.step(`scenario ${name}: HTTP at ${options.e2eRatePerS} req/s`);
    result.fixedRate = await loadPhase(env, stack, p, accepted, loads, 'fixed', options.e2eRatePerS);
    const f = result.fixedRate.timing;
    progress.done(`e2e p50 ${f.projectedMs.p50} ms, p99 ${f.projectedMs.p99} ms (accepted → projected)`);
    progress.step(`scenario ${name}: HTTP at saturation`);
    result.saturation = await loadPhase(env, stack, p, accepted, loads, 'sat', undefined);
    progress.done(
      `${result.saturation.load.acceptedPerS} accepted/s, ${result.saturation.timing.e2ePerS} orders/s end to end`,
    );
    result.verification = await verifyRun(p.pool, accepted, unknownOutcomes(loads));
    result.status = result.verification.ok ? 'ok' : 'failed';
    if (!result.verification.ok) result.error = result.verification.problems.join('; ');
  } catch (err) {
    result.error = err instanceof Error ? err.message : String(err);
    // Only the adapters still being finished may fail to come up; everything after start-up is a failure.
    if (!started && bus !== 'bullmq') result.status = 'unavailable';
    progress.done(`scenario ${name} ${result.status.toUpperCase()}: ${result.error.split('\n')[0]}`);
  } finally {
    await p.close();
    await stack.close().catch((err: unknown) => progress.done(`cleanup of ${name} failed: ${String(err)}`));
    env.live.delete(stack);
  }
  return result;
}
