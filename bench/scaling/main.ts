import { mkdir, writeFile, copyFile } from 'node:fs/promises';
import { join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { z } from 'zod';
import { commaSeparated } from '../../shared/config/config.ts';
import { describeMachine, type Machine } from '../machine.ts';
import {
  buildCapacityModel,
  predict,
  renderCapacity,
  type CapacityModel,
  type Prediction,
} from './capacity.ts';
import { cgroupLayout } from './cgroup.ts';
import { compileForReplicas } from './build.ts';
import { cappedDrain } from './drain.ts';
import { lineChart, smooth, stack } from './charts.ts';
import { loadScaledObject } from './keda.ts';
import { replayBurst, type ReplayResult } from './replay.ts';
import { runWorkerScaling, type WorkerScalingRow } from './workers.ts';
import { renderApiScalingTable, runApiScaling, type ApiScalingRow } from './api.ts';
import { parseScenarioArgs } from '../scenario-args.ts';

/**
 * `npm run bench -- --scaling`: what a replica adds, measured the way a platform team runs Conveyor —
 * every replica in a CPU-limited cgroup like a pod with `limits.cpu` — and KEDA's rule replayed on a
 * burst. Writes `<out>/scaling-<stamp>.json`, `scaling-latest.md` and the charts.
 */

const ROOT = fileURLToPath(new URL('../../', import.meta.url));

const ints = commaSeparated.transform((p) => p.map(Number)).pipe(z.array(z.number().int().min(1)).min(1));

const Args = z.object({
  quick: z.boolean().default(false),
  replicas: ints.optional(),
  cores: z.coerce.number().positive().max(2).optional(),
  runs: z.coerce.number().int().min(1).optional(),
  backlog: z.coerce.number().int().min(100).optional(),
  warmup: z.coerce.number().int().min(0).optional(),
  'skip-workers': z.boolean().default(false),
  'skip-replay': z.boolean().default(false),
  'skip-api': z.boolean().default(false),
  'api-replicas': ints.optional(),
  'api-cores': z.coerce.number().positive().max(2).optional(),
  'api-step': z.coerce.number().int().min(1).optional(),
  'api-step-seconds': z.coerce.number().min(1).max(60).optional(),
  compress: z.coerce.number().min(1).optional(),
  'replay-max': z.coerce.number().int().min(1).optional(),
  'burst-rate': z.coerce.number().int().min(1).optional(),
  'burst-seconds': z.coerce.number().int().min(1).optional(),
  'out-dir': z.string().min(1).default('bench/results'),
});

export const SCALING_USAGE = `npm run bench -- --scaling [options]
  --quick                 smoke-sized (replicas 1,2, one run, small backlog, short burst)
  --replicas <n,n,..>     worker replica counts                 (default 1,2,3,4)
  --cores <c>             CPU limit of each worker replica      (default 0.2)
  --runs <n>              runs per count; the median is reported (default 3)
  --backlog <n>           orders per drain                      (default 20000)
  --warmup <n>            warm-up orders per replica            (default 2000)
  --compress <x>          replay: cluster seconds per real second (default 10)
  --replay-max <n>        replay: most replicas this machine hosts (default 6)
  --burst-rate <r>        replay: orders/s arriving during the burst (default 3000)
  --burst-seconds <s>     replay: burst length                  (default 10)
  --api-replicas <n,n,..> API replica counts (HTTP ingest)     (default 1,2,3)
  --api-cores <c>         CPU limit of each API replica         (default 0.5)
  --api-step <r>          offered-rate step per API replica     (default 250 req/s)
  --api-step-seconds <s>  length of each offered-rate step      (default 5)
  --skip-workers, --skip-replay, --skip-api
  --out-dir <dir>                                              (default bench/results)`;

export interface ScalingResults {
  format: 'conveyor-scaling/1';
  startedAt: string;
  command: string;
  machine: Machine;
  cgroup: string;
  workers?: {
    cores: number;
    backlog: number;
    warmupPerReplica: number;
    runs: number;
    rows: WorkerScalingRow[];
  };
  capacity?: { model: CapacityModel; predictions: Prediction[] };
  api?: {
    cores: number;
    stepPerReplica: number;
    stepSeconds: number;
    p99TargetMs: number;
    rows: ApiScalingRow[];
  };
  replay?: {
    compress: number;
    scaledObject: string;
    cores: number;
    burstPerS: number;
    burstSeconds: number;
    maxReplicas: number;
    autoscaled: ReplayResult;
    fixed: ReplayResult;
  };
  ok: boolean;
}

const log = (line: string) => process.stdout.write(`scaling: ${line}\n`);

function workersTable(w: NonNullable<ScalingResults['workers']>): string {
  const head =
    '| worker replicas | drain orders/s (median) | runs | efficiency | replica CPU (cores) · throttled | Redis · PostgreSQL cores | machine cores | PG waits (top) | verified |\n| --- | --- | --- | --- | --- | --- | --- | --- | --- |';
  const rows = w.rows.map((r) => {
    const rep = r.representative;
    const cpu = (label: string) => rep.monitor.processes.find((p) => p.label === label)?.cpuCores ?? 0;
    const replicas = rep.replicaStats.map((s) => `${s.cpuCores} · ${s.throttledPct}%`).join(', ');
    const waits = rep.server.pgWaits
      .slice(0, 3)
      .map((x) => `${x.state} ${Math.round(x.share * 100)}%`)
      .join(', ');
    return `| ${r.replicas} | ${r.median} | ${r.runs.join(', ')} | ${r.efficiency.toFixed(2)} | ${replicas} | ${cpu('redis')} · ${cpu('postgres')} | ${rep.monitor.machineCpuCores} | ${waits} | ${r.verified ? `yes (${rep.verified.expected})` : 'NO'} |`;
  });
  return [head, ...rows].join('\n');
}

function perOrderTable(w: NonNullable<ScalingResults['workers']>): string {
  const r = w.rows[0]!.representative;
  const p = r.server.perOrder;
  const cpu = (label: string) => r.monitor.processes.find((x) => x.label === label)?.cpuCores ?? 0;
  const perOrderMs = (cores: number) => ((cores * 1000) / r.perS).toFixed(3);
  return [
    '| per order (1 replica drain) | value |',
    '| --- | --- |',
    `| Redis commands | ${p.redisCommands} (${r.server.topRedisCommands
      .slice(0, 5)
      .map((c) => `${c.command} ${c.perOrder}`)
      .join(', ')}) |`,
    `| Redis CPU | ${p.redisCpuMs} ms |`,
    `| PostgreSQL transactions | ${p.pgTransactions} |`,
    `| PostgreSQL rows written | ${p.pgRowsWritten} |`,
    `| WAL | ${Math.round(p.pgWalBytes)} bytes, ${p.pgWalSyncs} flushes |`,
    `| PostgreSQL CPU | ${perOrderMs(cpu('postgres'))} ms |`,
    `| worker CPU | ${perOrderMs(r.replicaStats.reduce((s, x) => s + x.cpuCores, 0))} ms |`,
  ].join('\n');
}

function replayTable(rp: NonNullable<ScalingResults['replay']>): string {
  const row = (name: string, r: ReplayResult) =>
    `| ${name} | ${r.orders} | ${r.drainSeconds} s | ${r.peakReplicas} | ${r.replicaStartSeconds} s | ${r.decisions.length} | ${r.reversals} | ${r.verified.ok ? `yes (${r.verified.orders} decided, ${r.verified.projected} projected, ${r.verified.duplicates} doubled, ${r.verified.deadLetters} dead)` : 'NO'} |`;
  return [
    '| run | orders | time to drain | peak replicas | replica start-up (median) | scale decisions | reversals (flapping) | reconciled |',
    '| --- | --- | --- | --- | --- | --- | --- | --- |',
    row('KEDA rule (shipped ScaledObject)', rp.autoscaled),
    row('fixed at minReplicaCount', rp.fixed),
  ].join('\n');
}

export function renderScalingMarkdown(
  r: ScalingResults,
  charts: { workers?: string; replay?: string },
): string {
  const m = r.machine;
  const out = [
    `Machine: ${m.nproc} × ${m.cpuModel}, ${m.memoryGb} GB RAM, ${m.kernel}; Node ${m.node}, Redis ${m.redis} (${m.redisPersistence}), PostgreSQL ${m.postgres} (${m.postgresDurability}). Load average at start: ${m.loadAverageAtStart}. CPU limits: ${r.cgroup}.`,
    '',
    `Run: \`${r.command}\` (${r.startedAt}).`,
  ];
  if (r.workers) {
    const w = r.workers;
    out.push(
      '',
      `#### Worker replicas at ${w.cores} core each (a drain of ${w.backlog} orders, each replica warmed up on ${w.warmupPerReplica}, queue paused while the backlog is put in place; median of ${w.runs})`,
      '',
      ...(charts.workers ? [`![worker scaling](${charts.workers})`, ''] : []),
      workersTable(w),
      '',
      'Efficiency = rate(n) / (n × rate(1)). "throttled" = share of CFS periods in which the replica hit its quota (CPU-bound at its limit). PG waits = what the platform\'s PostgreSQL backends were doing when sampled every 50 ms (CPU = running).',
      '',
      perOrderTable(w),
    );
  }
  if (r.capacity && r.workers) {
    out.push(
      '',
      '#### Capacity model (per order, from the one-replica drain; the stage split from a drain with one replica per worker kind)',
      '',
      renderCapacity(r.capacity.model, r.capacity.predictions, r.workers.cores),
    );
  }
  if (r.api) {
    const a = r.api;
    out.push(
      '',
      `#### API replicas at ${a.cores} core each: HTTP ingest, open loop (POST /v1/orders at evenly spaced times whatever the answers, latency from each request's scheduled time; rate stepped by ${a.stepPerReplica}/s per replica, ${a.stepSeconds} s per step, halved below the first step if even that misses; a failing step is run twice; each count warmed up first; no workers running)`,
      '',
      renderApiScalingTable(a.rows, a.p99TargetMs),
      '',
      `"throttled" = share of CFS periods in which the replica hit its quota: a throttled replica stalls until the period ends (up to ${Math.round(100 * (1 - a.cores))} ms at ${a.cores} core), which a p99 ≤ ${a.p99TargetMs} ms objective cannot absorb. Generator = this bench process (bench/open-loop.ts).`,
    );
  }
  if (r.replay) {
    const rp = r.replay;
    out.push(
      '',
      `#### KEDA's rule replayed on a burst (${rp.scaledObject}, time compressed ×${rp.compress}: HPA sync every ${(15 / rp.compress).toFixed(1)} s real, windows and policy periods likewise; ${rp.burstPerS} orders/s for ${rp.burstSeconds} s; replicas at ${rp.cores} core, at most ${rp.maxReplicas} on this machine)`,
      '',
      ...(charts.replay ? [`![autoscaler replay](${charts.replay})`, ''] : []),
      replayTable(rp),
    );
  }
  return `${out.join('\n')}\n`;
}

export async function scalingMain(argv: readonly string[]): Promise<number> {
  const options = Object.fromEntries(
    Object.keys(Args.shape).map((k) => [
      k,
      { type: ['quick', 'skip-workers', 'skip-replay', 'skip-api'].includes(k) ? 'boolean' : 'string' },
    ]),
  ) as Record<string, { type: 'boolean' | 'string' }>;
  const parsed = parseScenarioArgs(
    argv.filter((a) => a !== '--scaling'),
    options,
    Args,
    SCALING_USAGE,
  );
  if (!parsed.ok) return parsed.exitCode;
  const a = parsed.args;
  const q = a.quick;
  const layout = cgroupLayout();
  if (typeof layout === 'string') {
    log(`skipped: ${layout}`);
    return 0;
  }
  const started = new Date();
  const stamp = started.toISOString().replace(/[:.]/g, '-');
  const outDir = resolve(ROOT, a['out-dir']);
  await mkdir(outDir, { recursive: true });
  const machine = await describeMachine();
  const results: ScalingResults = {
    format: 'conveyor-scaling/1',
    startedAt: started.toISOString(),
    command: ['npm run bench --', ...argv].join(' '),
    machine,
    cgroup: `cgroup v${layout.version} CFS quota (${layout.root})`,
    ok: true,
  };
  const cores = a.cores ?? 0.2;
  log('compiling the platform as the container image does (replicas start like pods)');
  const compiledDir = await compileForReplicas();
  if (!a['skip-workers']) {
    const w = {
      cores,
      backlog: a.backlog ?? (q ? 1_500 : 20_000),
      warmupPerReplica: a.warmup ?? (q ? 300 : 2_000),
      runs: a.runs ?? (q ? 1 : 3),
    };
    const rows = await runWorkerScaling({
      layout,
      compiledDir,
      replicaCounts: a.replicas ?? (q ? [1, 2] : [1, 2, 3, 4]),
      ...w,
      log,
    });
    results.workers = { ...w, rows };
    results.ok &&= rows.every((r) => r.verified);
    for (const r of rows)
      log(`${r.replicas} replica(s): median ${r.median} orders/s, efficiency ${r.efficiency}`);
    log('capacity: one replica per worker kind, to split the worker CPU by stage');
    const stages = await cappedDrain({
      layout,
      replicas: 3,
      cores: 1,
      backlog: w.backlog,
      warmupPerReplica: w.warmupPerReplica,
      splitStages: true,
      compiledDir,
    });
    results.ok &&= stages.verified.ok;
    const one = rows.find((r) => r.replicas === 1)?.representative;
    if (one) {
      const model = buildCapacityModel(one, stages);
      results.capacity = { model, predictions: predict(model, rows, cores, machine.nproc) };
    }
  }
  if (!a['skip-api']) {
    const api = {
      cores: a['api-cores'] ?? 0.5,
      stepPerReplica: a['api-step'] ?? 250,
      stepSeconds: a['api-step-seconds'] ?? (q ? 3 : 5),
      p99TargetMs: 10,
    };
    const rows = await runApiScaling({
      layout,
      replicaCounts: a['api-replicas'] ?? (q ? [1] : [1, 2, 3]),
      ...api,
      ...(q ? { warmupSeconds: 5, maxPerReplica: 1_000 } : {}),
      compiledDir,
      log,
    });
    results.api = { ...api, rows };
    results.ok &&= rows.every((r) => r.verified.ok);
    for (const r of rows)
      log(
        `${r.replicas} API replica(s): ${r.best ? `${r.best.offeredPerS}/s at p99 ${r.best.load.latencyMs.p99} ms` : 'p99 objective not met'}`,
      );
  }
  if (!a['skip-replay']) {
    const spec = loadScaledObject(join(ROOT, 'deploy/base/keda-orders.yaml'), 'conveyor-worker-orders');
    const base = {
      layout,
      spec,
      compress: a.compress ?? 10,
      maxReplicas: a['replay-max'] ?? (q ? 3 : 6),
      cores,
      eventsCores: 0.5,
      compiledDir,
      burstPerS: a['burst-rate'] ?? (q ? 1_000 : 3_000),
      burstSeconds: a['burst-seconds'] ?? (q ? 3 : 10),
      log,
    };
    log(`replay: ${spec.name} autoscaled`);
    const autoscaled = await replayBurst({ ...base, autoscale: true });
    log(`replay: fixed at ${Math.max(1, spec.minReplicas)} replica(s)`);
    const fixed = await replayBurst({ ...base, autoscale: false });
    results.replay = {
      compress: base.compress,
      scaledObject: `deploy/base/keda-orders.yaml (${spec.name}: target ${spec.targetValue}, min ${spec.minReplicas}, max ${spec.maxReplicas})`,
      cores,
      burstPerS: base.burstPerS,
      burstSeconds: base.burstSeconds,
      maxReplicas: base.maxReplicas,
      autoscaled,
      fixed,
    };
    results.ok &&= autoscaled.verified.ok && fixed.verified.ok;
  }
  const charts: { workers?: string; replay?: string } = {};
  if (results.workers) {
    const rows = results.workers.rows;
    const base = rows[0]!.median / rows[0]!.replicas;
    await writeFile(
      join(outDir, 'scaling-workers.svg'),
      lineChart({
        title: `Drain rate with worker replicas at ${cores} core each (median of ${results.workers.runs})`,
        xLabel: 'worker replicas',
        yLabel: 'orders/s',
        series: [
          { label: 'measured', color: '#2563eb', points: rows.map((r) => [r.replicas, r.median]) },
          {
            label: 'linear (n × one replica)',
            color: '#9ca3af',
            dashed: true,
            points: rows.map((r) => [r.replicas, r.replicas * base]),
          },
        ],
      }),
    );
    charts.workers = relative(ROOT, join(outDir, 'scaling-workers.svg'));
  }
  if (results.replay) {
    const t = results.replay.autoscaled.timeline;
    const f = results.replay.fixed.timeline;
    await writeFile(
      join(outDir, 'scaling-replay.svg'),
      stack([
        lineChart({
          title: 'A burst under KEDA’s rule: backlog and replicas over time',
          xLabel: 'seconds (real; ×compress in cluster time)',
          yLabel: 'orders waiting (backlog)',
          yRightLabel: 'replicas',
          width: 860,
          series: [
            { label: 'backlog, autoscaled', color: '#2563eb', points: t.map((p) => [p.t, p.backlog]) },
            {
              label: 'backlog, 1 fixed replica',
              color: '#9ca3af',
              dashed: true,
              points: f.map((p) => [p.t, p.backlog]),
            },
            {
              label: 'replicas (right axis)',
              color: '#dc2626',
              right: true,
              points: t.map((p) => [p.t, p.replicas]),
            },
          ],
        }),
        lineChart({
          title: 'Orders decided per second (1 s moving average)',
          xLabel: 'seconds (real)',
          yLabel: 'orders/s',
          width: 860,
          height: 260,
          series: [
            {
              label: 'autoscaled',
              color: '#2563eb',
              points: smooth(
                t.map((p) => [p.t, p.decidedPerS]),
                1,
              ),
            },
            {
              label: '1 fixed replica',
              color: '#9ca3af',
              dashed: true,
              points: smooth(
                f.map((p) => [p.t, p.decidedPerS]),
                1,
              ),
            },
          ],
        }),
      ]),
    );
    charts.replay = relative(ROOT, join(outDir, 'scaling-replay.svg'));
  }
  const json = join(outDir, `scaling-${stamp}.json`);
  await writeFile(json, `${JSON.stringify(results, null, 2)}\n`);
  await writeFile(join(outDir, 'scaling-latest.md'), renderScalingMarkdown(results, charts));
  await copyFile(json, join(outDir, 'scaling-latest.json'));
  log(`results: ${relative(ROOT, json)}, table: ${relative(ROOT, join(outDir, 'scaling-latest.md'))}`);
  return results.ok ? 0 : 1;
}
