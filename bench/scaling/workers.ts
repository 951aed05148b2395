import type { cgroupLayout } from './cgroup.ts';
import { cappedDrain, type CappedDrainResult } from './drain.ts';

export interface WorkerScalingOptions {
  layout: Exclude<ReturnType<typeof cgroupLayout>, string>;
  replicaCounts: number[];
  cores: number;
  runs: number;
  backlog: number;
  warmupPerReplica: number;
  env?: Record<string, string>;
  compiledDir?: string;
  log: (line: string) => void;
}

export interface WorkerScalingRow {
  replicas: number;
  /** Drain rate of each run, orders/s. */
  runs: number[];
  median: number;
  /** rate(n) / (n × rate(1)), medians. */
  efficiency: number;
  /** The run closest to the median, with its CPU, throttling and server stats. */
  representative: CappedDrainResult;
  verified: boolean;
}

const median = (xs: readonly number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};

/**
 * Drains the same backlog with each replica count, `runs` times, the counts interleaved within a run
 * (1, 2, 3, 4, then again) so that drift in the machine hits every count alike.
 */
export async function runWorkerScaling(o: WorkerScalingOptions): Promise<WorkerScalingRow[]> {
  const results = new Map<number, CappedDrainResult[]>(o.replicaCounts.map((n) => [n, []]));
  for (let run = 1; run <= o.runs; run++) {
    for (const n of o.replicaCounts) {
      o.log(`run ${run}/${o.runs}: ${n} replica(s) at ${o.cores} core, ${o.backlog} orders`);
      const r = await cappedDrain({
        layout: o.layout,
        replicas: n,
        cores: o.cores,
        backlog: o.backlog,
        warmupPerReplica: o.warmupPerReplica,
        ...(o.env ? { env: o.env } : {}),
        ...(o.compiledDir ? { compiledDir: o.compiledDir } : {}),
      });
      o.log(
        `  ${r.perS} orders/s in ${r.seconds} s; replicas ${r.replicaStats.map((s) => `${s.cpuCores} cores, throttled ${s.throttledPct}%`).join(' | ')}; verified ${r.verified.ok}`,
      );
      results.get(n)!.push(r);
    }
  }
  const base = median(results.get(o.replicaCounts[0]!)!.map((r) => r.perS)) / o.replicaCounts[0]!;
  return o.replicaCounts.map((n) => {
    const rs = results.get(n)!;
    const m = median(rs.map((r) => r.perS));
    const representative = [...rs].sort((a, b) => Math.abs(a.perS - m) - Math.abs(b.perS - m))[0]!;
    return {
      replicas: n,
      runs: rs.map((r) => r.perS),
      median: Math.round(m),
      efficiency: Math.round((m / (n * base)) * 100) / 100,
      representative,
      verified: rs.every((r) => r.verified.ok),
    };
  });
}
