import os from 'node:os';
import type { MonitorWindow, ProcessMonitor } from '../monitor.ts';
import type { Progress } from '../progress.ts';
import { waitProjected, type Verification } from '../verify.ts';
import {
  decidedPerS,
  steadyPhase,
  timeline,
  type OrderTimes,
  type SteadyOrder,
  type SteadyPhase,
  type TimelinePoint,
} from './analysis.ts';
import { flood, type FloodResult } from './flood.ts';
import {
  decidedCount,
  readJobStages,
  readOrderTimes,
  startFairStack,
  verifyStack,
  waitDecided,
  type JobStage,
} from './harness.ts';
import { redisCost, redisCounters, type RedisCost } from './private-redis.ts';
import { parseSteadyCustomer, scheduledAt, startSteady, type SteadyResult } from './steady.ts';

/** The tenants of the noisy-neighbour run: A floods, B and C post steadily. */
export const NOISY = 'flood-a';
export const STEADY = ['steady-b', 'steady-c'] as const;
const TAGS: Record<(typeof STEADY)[number], string> = { 'steady-b': 'b', 'steady-c': 'c' };

export interface NoisyOptions {
  fairness: boolean;
  orders: number;
  quietS: number;
  steadyRatePerS: number;
  sliceS: number;
  orderSize: number;
  logLevel: string;
  platformEnv: Record<string, string>;
  monitor: ProcessMonitor;
  progress: Progress;
  live: Set<{ close(): Promise<void> }>;
  notes: string[];
}

export interface SteadyTenantResult {
  tenant: string;
  quiet: SteadyPhase;
  /** From A's first batch to A's last order decided. */
  flood: SteadyPhase;
  /** The flood's first part: while A was still posting (the API and the worker share the cores). */
  floodIngest: SteadyPhase;
  /** The flood's second part: A's backlog draining, A posting no more. */
  floodDrain: SteadyPhase;
  /** Open-loop totals over every slice: scheduled, accepted, errors, timeouts, other statuses. */
  requests: {
    scheduled: number;
    accepted: number;
    errors: number;
    timeouts: number;
    rejected: Record<string, number>;
  };
  /** Worst generator lag of any slice, ms (a starved generator would show here). */
  generatorLagMaxMs: number;
}

export interface NoisyResult {
  fairness: boolean;
  /** Epoch ms: steady producers started, flood's first batch, flood's last answer, A's last order decided. */
  at: { quietFrom: number; floodFrom: number; floodEnqueued: number; floodDrained: number; end: number };
  flood: FloodResult;
  /** A's orders / (A's last decided − A's first batch sent). */
  floodDrainPerS: number;
  /** Every order decided (A, B, C) per second from A's first batch to A's last decision. */
  totalPerS: number;
  steady: SteadyTenantResult[];
  /** Per order over the flood (first batch → everything projected): Redis commands and CPU. */
  redis: RedisCost;
  /** Orders the Redis and CPU figures are divided by. */
  costOrders: number;
  /** Processes' CPU during the flood (first batch → A drained). */
  monitor: MonitorWindow;
  /** CPU ms per order decided in the flood window, by process. */
  cpuMsPerOrder: Record<string, number>;
  timeline: TimelinePoint[];
  verification: Verification;
  loadAverage: { start: number; end: number };
}

const round3 = (n: number) => Math.round(n * 1000) / 1000;

/**
 * The noisy neighbour on one stack: B and C post `steadyRatePerS` orders each from the start (the quiet
 * phase, `quietS` seconds), then A posts `orders` orders in batches as fast as the API takes them while
 * B and C go on; B and C stop once A's last order is decided. Then everything is projected and counted.
 */
export async function runNoisy(o: NoisyOptions): Promise<NoisyResult> {
  const { progress, monitor } = o;
  const name = o.fairness ? 'fair' : 'fifo';
  const loadStart = os.loadavg()[0]!;
  progress.step(`noisy neighbour, FAIRNESS=${o.fairness}: starting redis, API and worker`);
  const s = await startFairStack({
    name,
    fairness: o.fairness,
    tenants: [NOISY, ...STEADY],
    logLevel: o.logLevel,
    platformEnv: o.platformEnv,
    monitor,
    progress,
    live: o.live,
    notes: o.notes,
  });
  try {
    progress.step(`${name}: quiet phase, B and C at ${o.steadyRatePerS}/s each for ${o.quietS} s`);
    const quietFrom = Date.now();
    const producers = STEADY.map((t) =>
      startSteady({
        url: s.apiUrl,
        secret: s.secrets[t]!,
        tag: TAGS[t],
        ratePerS: o.steadyRatePerS,
        sliceS: o.sliceS,
        orderSize: o.orderSize,
      }),
    );
    await new Promise((r) => setTimeout(r, o.quietS * 1000));

    progress.step(`${name}: A floods ${o.orders} orders through POST /v1/orders/batch, B and C go on`);
    // The quiet phase's jobs now, before the flood's 100,000 push them out of BullMQ's completed set.
    const jobs = await readJobStages(s, STEADY, quietFrom, Date.now());
    const before = await redisCounters(s.client);
    const decidedBefore = await decidedCount(s.pool);
    monitor.window();
    const floodIds: string[] = [];
    const floodResult = await flood(
      {
        url: s.apiUrl,
        tenant: NOISY,
        secret: s.secrets[NOISY]!,
        tag: 'a',
        orders: o.orders,
        orderSize: o.orderSize,
        progress,
      },
      floodIds,
    );
    s.accepted.push(...floodIds);
    // The jobs of B and C finished while A posted, before the drain's completions trim them away.
    for (const [id, stage] of await readJobStages(s, STEADY, floodResult.startedAt, Date.now()))
      jobs.set(id, stage);
    s.unknownOutcomes += floodResult.itemErrors;
    progress.done(`A: ${floodResult.accepted} accepted at ${floodResult.acceptedPerS}/s`);
    await waitDecided(s, NOISY, floodResult.accepted, {
      timeoutMs: 120_000 + o.orders * 20,
      progress,
      label: `${name}: A's orders decided`,
    });
    const window = monitor.window();
    const decidedInWindow = (await decidedCount(s.pool)) - decidedBefore;
    const steady: SteadyResult[] = await Promise.all(producers.map((p) => p.stop()));
    for (const r of steady) {
      s.accepted.push(...r.acceptedIds);
      for (const sl of r.slices) s.unknownOutcomes += sl.result.scheduled - sl.result.accepted;
    }
    await waitProjected(s.pool, s.accepted.length, {
      label: `${name}: everything projected`,
      timeoutMs: 120_000,
      progress,
      pendingJobs: s.pendingJobs,
      check: s.stack.assertAlive,
    });
    const after = await redisCounters(s.client);
    for (const [id, stage] of await readJobStages(s, STEADY, floodResult.finishedAt - 5_000, Date.now()))
      jobs.set(id, stage);
    const costOrders = (await decidedCount(s.pool)) - decidedBefore;
    const verification = await verifyStack(s);
    progress.done(
      verification.ok
        ? `${name}: verified, ${verification.accepted} orders, nothing lost or doubled`
        : `${name}: VERIFICATION FAILED: ${verification.problems.join('; ')}`,
    );

    const orders = await readOrderTimes(s.pool);
    const aOrders = orders.filter((x) => x.tenant === NOISY);
    const floodFrom = floodResult.startedAt;
    let floodDrained = floodFrom;
    for (const x of aOrders) floodDrained = Math.max(floodDrained, x.decidedAt);
    const steadyResults = STEADY.map((tenant, k) =>
      steadyTenant(tenant, orders, jobs, steady[k]!, o.steadyRatePerS, {
        quietFrom,
        floodFrom,
        floodEnqueued: floodResult.finishedAt,
        floodDrained,
      }),
    );
    // cores × seconds = CPU seconds in the window, shared out over the orders decided in it.
    const cpuMsPerOrder = Object.fromEntries(
      window.processes
        .filter((p) => p.cpuCores > 0)
        .map((p) => [p.label, round3((p.cpuCores * window.seconds * 1000) / Math.max(1, decidedInWindow))]),
    );
    const end = Date.now();
    return {
      fairness: o.fairness,
      at: { quietFrom, floodFrom, floodEnqueued: floodResult.finishedAt, floodDrained, end },
      flood: floodResult,
      floodDrainPerS: Math.round(aOrders.length / Math.max(0.001, (floodDrained - floodFrom) / 1000)),
      totalPerS: decidedPerS(orders, floodFrom, floodDrained),
      steady: steadyResults,
      redis: redisCost(before, after, costOrders),
      costOrders,
      monitor: window,
      cpuMsPerOrder,
      timeline: timeline(orders, [NOISY, ...STEADY], quietFrom, floodDrained + 2_000),
      verification,
      loadAverage: { start: loadStart, end: os.loadavg()[0]! },
    };
  } finally {
    await s.close();
  }
}

/** One steady tenant's orders with their scheduled times, split into the quiet and the flood phase. */
function steadyTenant(
  tenant: string,
  orders: readonly OrderTimes[],
  jobs: ReadonlyMap<string, JobStage>,
  produced: SteadyResult,
  ratePerS: number,
  at: { quietFrom: number; floodFrom: number; floodEnqueued: number; floodDrained: number },
): SteadyTenantResult {
  const starts = new Map(produced.slices.map((sl) => [sl.slice, sl.startedAt]));
  const mine: SteadyOrder[] = [];
  for (const x of orders) {
    if (x.tenant !== tenant) continue;
    const c = parseSteadyCustomer(x.customerId);
    const when = c && scheduledAt(starts, ratePerS, c.slice, c.index);
    if (when !== undefined) mine.push({ ...x, scheduledAt: when, job: jobs.get(x.orderId) });
  }
  const totals = {
    scheduled: 0,
    accepted: 0,
    errors: 0,
    timeouts: 0,
    rejected: {} as Record<string, number>,
  };
  let lagMax = 0;
  for (const { result: r } of produced.slices) {
    totals.scheduled += r.scheduled;
    totals.accepted += r.accepted;
    totals.errors += r.errors;
    totals.timeouts += r.timeouts;
    for (const [code, n] of Object.entries(r.rejected))
      totals.rejected[code] = (totals.rejected[code] ?? 0) + n;
    lagMax = Math.max(lagMax, r.lagMs.max);
  }
  return {
    tenant,
    // The first second is the producer's own start (thread, sockets, JIT): left out.
    quiet: steadyPhase(mine, at.quietFrom + 1_000, at.floodFrom),
    flood: steadyPhase(mine, at.floodFrom, at.floodDrained),
    floodIngest: steadyPhase(mine, at.floodFrom, at.floodEnqueued),
    floodDrain: steadyPhase(mine, at.floodEnqueued, at.floodDrained),
    requests: totals,
    generatorLagMaxMs: lagMax,
  };
}
