import { summarize, type LatencySummary } from '../open-loop.ts';

/**
 * The fairness bench's arithmetic, apart from the processes it runs: latencies of the steady tenants'
 * orders by phase, throughput over a window, the window in which two tenants both had a backlog and
 * their completions in it. Everything is read from the write model's own timestamps (accepted_at set
 * by the API, decided_at by the order worker's transaction, processed_at by the projection).
 */

/** One order as the write model (and read model) recorded it; times in ms since the epoch. */
export interface OrderTimes {
  orderId: string;
  /** The API key that accepted it (`orders.accepted_by`). */
  tenant: string;
  customerId: string;
  acceptedAt: number;
  decidedAt: number;
  /** Its event projected into the read models (`projection_inbox.processed_at`). */
  projectedAt: number | null;
}

export interface LatencyStats extends LatencySummary {
  n: number;
}

/** Latencies of one steady tenant's orders in one phase, ms. */
export interface SteadyPhase {
  /** accepted_at → decided_at: the "accepted to completed". */
  acceptedToDecided: LatencyStats;
  /** scheduled → decided_at: the same, plus the HTTP request (open loop: no coordinated omission). */
  scheduledToDecided: LatencyStats;
  /** scheduled → accepted_at: the API's part (waiting for a socket, the event loop, auth, validation). */
  scheduledToAccepted: LatencyStats;
  /** accepted_at → projection committed: what a reader of `GET /v1/orders/{id}` waits for. */
  acceptedToProjected: LatencyStats;
  /**
   * accepted → decided split by BullMQ's job timestamps, for the orders whose job was still kept:
   * in the API (accepted_at → job built, admission included), in Redis (→ a worker took it: its turn,
   * then the wait list) and in the worker (→ decided_at: the micro-batch and its transaction).
   */
  stages: { orders: number; held: number; api: LatencyStats; queue: LatencyStats; worker: LatencyStats };
}

export const stats = (values: readonly number[]): LatencyStats => ({
  n: values.length,
  ...summarize(values),
});

/** An order of a steady tenant, with the time its request was scheduled. */
export interface SteadyOrder extends OrderTimes {
  scheduledAt: number;
  /** BullMQ's timestamps of its job, when they were read. */
  job?: { addedAt: number; pickedAt: number; held: boolean } | undefined;
}

/** The latencies of `orders` scheduled in [from, to). */
export function steadyPhase(orders: readonly SteadyOrder[], from: number, to: number): SteadyPhase {
  const inPhase = orders.filter((o) => o.scheduledAt >= from && o.scheduledAt < to);
  return {
    acceptedToDecided: stats(inPhase.map((o) => o.decidedAt - o.acceptedAt)),
    scheduledToDecided: stats(inPhase.map((o) => o.decidedAt - o.scheduledAt)),
    scheduledToAccepted: stats(inPhase.map((o) => o.acceptedAt - o.scheduledAt)),
    acceptedToProjected: stats(
      inPhase.filter((o) => o.projectedAt !== null).map((o) => o.projectedAt! - o.acceptedAt),
    ),
    stages: stagesOf(inPhase),
  };
}

function stagesOf(orders: readonly SteadyOrder[]): SteadyPhase['stages'] {
  const withJob = orders.filter((o) => o.job && o.job.addedAt > 0 && o.job.pickedAt > 0);
  return {
    orders: withJob.length,
    held: withJob.filter((o) => o.job!.held).length,
    api: stats(withJob.map((o) => o.job!.addedAt - o.acceptedAt)),
    queue: stats(withJob.map((o) => o.job!.pickedAt - o.job!.addedAt)),
    worker: stats(withJob.map((o) => o.decidedAt - o.job!.pickedAt)),
  };
}

/** Orders decided in [from, to] per second. */
export function decidedPerS(orders: readonly OrderTimes[], from: number, to: number): number {
  const n = orders.filter((o) => o.decidedAt >= from && o.decidedAt <= to).length;
  return Math.round(n / Math.max(0.001, (to - from) / 1000));
}

/** Per-second buckets from `from`: orders decided per tenant, and the worst accepted → decided latency of the orders accepted in that second, per tenant. */
export interface TimelinePoint {
  /** Seconds since `from`. */
  t: number;
  decided: Record<string, number>;
  /** Largest accepted → decided (ms) of the orders accepted in this second; absent with none. */
  worstMs: Record<string, number>;
}

export function timeline(
  orders: readonly OrderTimes[],
  tenants: readonly string[],
  from: number,
  to: number,
): TimelinePoint[] {
  const seconds = Math.max(1, Math.ceil((to - from) / 1000));
  const points: TimelinePoint[] = Array.from({ length: seconds }, (_, t) => ({
    t,
    decided: Object.fromEntries(tenants.map((x) => [x, 0])),
    worstMs: {},
  }));
  for (const o of orders) {
    if (!tenants.includes(o.tenant)) continue;
    const d = Math.floor((o.decidedAt - from) / 1000);
    if (d >= 0 && d < seconds) points[d]!.decided[o.tenant]! += 1;
    const a = Math.floor((o.acceptedAt - from) / 1000);
    if (a >= 0 && a < seconds) {
      const w = points[a]!.worstMs;
      w[o.tenant] = Math.max(w[o.tenant] ?? 0, Math.round(o.decidedAt - o.acceptedAt));
    }
  }
  return points;
}

/** A backlog sample of the fair queue: commands waiting their turn and handed to workers so far, per tenant. */
export interface BacklogSample {
  at: number;
  waiting: Record<string, number>;
  started: Record<string, number>;
}

/**
 * The span in which every one of `tenants` had commands waiting their turn: from the first sample in
 * which all had some to the last such sample (undefined when there is none — fairness off or idle).
 */
export function bothBackloggedWindow(
  samples: readonly BacklogSample[],
  tenants: readonly string[],
): { from: number; to: number; samples: number } | undefined {
  const all = samples.filter((s) => tenants.every((t) => (s.waiting[t] ?? 0) > 0));
  if (all.length < 2) return undefined;
  return { from: all[0]!.at, to: all.at(-1)!.at, samples: all.length };
}

/** Orders of each of `tenants` decided in [from, to]. */
export function completionsIn(
  orders: readonly OrderTimes[],
  tenants: readonly string[],
  from: number,
  to: number,
): Record<string, number> {
  const out: Record<string, number> = Object.fromEntries(tenants.map((t) => [t, 0]));
  for (const o of orders)
    if (o.decidedAt >= from && o.decidedAt <= to && o.tenant in out) out[o.tenant]! += 1;
  return out;
}

/**
 * Without backlog samples: the span from the later of the tenants' first accepted order to the earlier
 * of their last decided one — while both were posting or draining. Cruder: a tenant may have had
 * nothing waiting in it.
 */
export function overlapWindow(
  orders: readonly OrderTimes[],
  tenants: readonly string[],
): { from: number; to: number } | undefined {
  let from = -Infinity;
  let to = Infinity;
  for (const t of tenants) {
    let first = Infinity;
    let last = -Infinity;
    for (const o of orders) {
      if (o.tenant !== t) continue;
      first = Math.min(first, o.acceptedAt);
      last = Math.max(last, o.decidedAt);
    }
    if (first === Infinity) return undefined;
    from = Math.max(from, first);
    to = Math.min(to, last);
  }
  return to > from ? { from, to } : undefined;
}

/** How many of each tenant's commands were handed to the workers between two samples (the dispatcher's share). */
export function startedBetween(
  a: BacklogSample,
  b: BacklogSample,
  tenants: readonly string[],
): Record<string, number> {
  return Object.fromEntries(tenants.map((t) => [t, (b.started[t] ?? 0) - (a.started[t] ?? 0)]));
}
