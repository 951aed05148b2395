import os from 'node:os';
import type { ProcessMonitor } from '../monitor.ts';
import type { Progress } from '../progress.ts';
import { waitProjected, type Verification } from '../verify.ts';
import {
  bothBackloggedWindow,
  completionsIn,
  overlapWindow,
  startedBetween,
  timeline,
  type BacklogSample,
  type TimelinePoint,
} from './analysis.ts';
import { flood, type FloodResult } from './flood.ts';
import { readOrderTimes, startFairStack, verifyStack } from './harness.ts';

export const HEAVY = 'weight-3';
export const LIGHT = 'weight-1';

export interface WeightedOptions {
  /** Orders each of the two tenants posts. */
  orders: number;
  heavyWeight: number;
  lightWeight: number;
  orderSize: number;
  logLevel: string;
  platformEnv: Record<string, string>;
  monitor: ProcessMonitor;
  progress: Progress;
  live: Set<{ close(): Promise<void> }>;
  notes: string[];
}

export interface WeightedResult {
  /** TENANTS as the platform ran with it. */
  tenants: string;
  floods: FloodResult[];
  /** The span both tenants had commands waiting their turn, and where it came from. */
  window: {
    from: number;
    to: number;
    seconds: number;
    source: 'backlog samples' | 'write model (no samples)';
  };
  /** Orders decided in the window per tenant, and heavy ÷ light. */
  completions: Record<string, number>;
  ratio: number;
  /** Commands handed to the workers in the window per tenant (the dispatcher's counters), and heavy ÷ light. */
  dispatched: Record<string, number> | null;
  dispatchedRatio: number | null;
  samples: BacklogSample[];
  timeline: TimelinePoint[];
  start: number;
  verification: Verification;
  loadAverage: { start: number; end: number };
}

/**
 * Two tenants of weights 3 and 1 flood the same queue at once, as fast as the API takes them; the
 * fair queue's backlog is sampled every 200 ms, and the orders each tenant had decided in the span
 * where both still had commands waiting are compared.
 */
export async function runWeighted(o: WeightedOptions): Promise<WeightedResult> {
  const { progress } = o;
  const loadStart = os.loadavg()[0]!;
  const tenants = `${HEAVY}:weight=${o.heavyWeight},${LIGHT}:weight=${o.lightWeight}`;
  progress.step(`weighted: TENANTS=${tenants}, starting redis, API and worker`);
  const s = await startFairStack({
    name: 'weighted',
    fairness: true,
    tenants: [HEAVY, LIGHT],
    tenantPolicies: tenants,
    logLevel: o.logLevel,
    platformEnv: o.platformEnv,
    monitor: o.monitor,
    progress,
    live: o.live,
    notes: o.notes,
  });
  try {
    const samples: BacklogSample[] = [];
    let sampling = true;
    const sampler = (async () => {
      while (sampling) {
        const at = Date.now();
        const b = await s.fair.backlog(s.client, 10).catch(() => undefined);
        if (b) {
          samples.push({
            at,
            waiting: Object.fromEntries(b.tenants.map((t) => [t.tenant, t.waiting])),
            started: Object.fromEntries(b.tenants.map((t) => [t.tenant, t.started])),
          });
        }
        await new Promise((r) => setTimeout(r, 200));
      }
    })();
    progress.step(`weighted: ${HEAVY} and ${LIGHT} each flood ${o.orders} orders at once`);
    const start = Date.now();
    const ids: string[][] = [[], []];
    const floods = await Promise.all(
      [HEAVY, LIGHT].map((tenant, k) =>
        flood(
          {
            url: s.apiUrl,
            tenant,
            secret: s.secrets[tenant]!,
            tag: k === 0 ? 'h' : 'l',
            orders: o.orders,
            orderSize: o.orderSize,
            lanes: 2,
            progress,
          },
          ids[k]!,
        ),
      ),
    );
    for (const [k, f] of floods.entries()) {
      s.accepted.push(...ids[k]!);
      s.unknownOutcomes += f.itemErrors;
    }
    await waitProjected(s.pool, s.accepted.length, {
      label: 'weighted: everything projected',
      timeoutMs: 120_000 + o.orders * 40,
      progress,
      pendingJobs: s.pendingJobs,
      check: s.stack.assertAlive,
    });
    sampling = false;
    await sampler;
    const verification = await verifyStack(s);
    progress.done(
      verification.ok
        ? `weighted: verified, ${verification.accepted} orders, nothing lost or doubled`
        : `weighted: VERIFICATION FAILED: ${verification.problems.join('; ')}`,
    );
    const orders = await readOrderTimes(s.pool);
    const pair = [HEAVY, LIGHT];
    const sampled = bothBackloggedWindow(samples, pair);
    const fallback = sampled ? undefined : overlapWindow(orders, pair);
    const w = sampled ?? fallback ?? { from: start, to: start };
    const completions = completionsIn(orders, pair, w.from, w.to);
    let dispatched: Record<string, number> | null = null;
    if (sampled) {
      const inside = samples.filter((x) => x.at >= sampled.from && x.at <= sampled.to);
      dispatched = startedBetween(inside[0]!, inside.at(-1)!, pair);
    }
    const ratioOf = (r: Record<string, number>) =>
      Math.round(((r[HEAVY] ?? 0) / Math.max(1, r[LIGHT] ?? 0)) * 1000) / 1000;
    let last = start;
    for (const x of orders) if (pair.includes(x.tenant)) last = Math.max(last, x.decidedAt);
    return {
      tenants,
      floods,
      window: {
        from: w.from,
        to: w.to,
        seconds: Math.round((w.to - w.from) / 100) / 10,
        source: sampled ? 'backlog samples' : 'write model (no samples)',
      },
      completions,
      ratio: ratioOf(completions),
      dispatched,
      dispatchedRatio: dispatched ? ratioOf(dispatched) : null,
      samples,
      timeline: timeline(orders, pair, start, last + 1_000),
      start,
      verification,
      loadAverage: { start: loadStart, end: os.loadavg()[0]! },
    };
  } finally {
    await s.close();
  }
}
