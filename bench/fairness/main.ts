import { execFileSync } from 'node:child_process';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { z } from 'zod';
import { describeMachine } from '../machine.ts';
import { createMonitor } from '../monitor.ts';
import { createProgress } from '../progress.ts';
import { runNoisy, type NoisyResult } from './noisy.ts';
import {
  evaluateFairnessTargets,
  roundSummaries,
  renderFairnessChart,
  renderFairnessMarkdown,
  type FairnessResults,
} from './report.ts';
import { runWeighted, type WeightedResult } from './weighted.ts';
import { parseScenarioArgs } from '../scenario-args.ts';

/**
 * `npm run bench -- --fairness`: issue #21's measurements on the real stack — a noisy neighbour with
 * and without fairness in the same run, and two weighted floods — written to
 * `<out>/fairness.json`, `fairness.md` and `fairness.svg`. Exits 1 when an order was lost or doubled.
 */

const ROOT = fileURLToPath(new URL('../../', import.meta.url));

const Args = z.object({
  fairness: z.boolean().default(true),
  quick: z.boolean().default(false),
  orders: z.coerce.number().int().min(100).max(10_000_000).optional(),
  'weighted-orders': z.coerce.number().int().min(100).optional(),
  'quiet-seconds': z.coerce.number().min(3).max(600).optional(),
  'steady-rate': z.coerce.number().int().min(1).max(1_000).default(20),
  'slice-seconds': z.coerce.number().min(1).max(60).default(5),
  weights: z
    .string()
    .regex(/^\d+:\d+$/, '<heavy>:<light>, e.g. 3:1')
    .default('3:1'),
  'order-size': z.coerce.number().int().min(1).max(100).default(3),
  rounds: z.coerce.number().int().min(1).max(5).default(1),
  'skip-fifo': z.boolean().default(false),
  'skip-weighted': z.boolean().default(false),
  'skip-noisy': z.boolean().default(false),
  'render-only': z.boolean().default(false),
  'out-dir': z.string().min(1).default('bench/results'),
  'log-level': z.enum(['fatal', 'error', 'warn', 'info']).default('warn'),
  'platform-env': z
    .string()
    .regex(/^([A-Z][A-Z0-9_]*=[^,]*)(,[A-Z][A-Z0-9_]*=[^,]*)*$/, 'KEY=VALUE[,KEY=VALUE...]')
    .optional(),
});

export const FAIRNESS_USAGE = `npm run bench -- --fairness [options]
  --quick                   smoke-sized (5,000 flood orders, 8 s quiet, 2,000 per weighted tenant)
  --orders <n>              orders tenant A floods                     (default 100000)
  --weighted-orders <n>     orders each weighted tenant floods         (default orders / 5)
  --quiet-seconds <s>       B and C alone before the flood             (default 20; quick 8)
  --steady-rate <r>         orders/s each of B and C posts             (default 20)
  --slice-seconds <s>       open-loop slice length of B and C          (default 5)
  --weights <h>:<l>         the weighted tenants' weights              (default 3:1)
  --order-size <n>          items per order                            (default 3)
  --rounds <n>              noisy-neighbour pairs, alternating which goes first (fair, FIFO, FIFO,
                            fair, …); targets judged on the medians      (default 1)
  --skip-fifo, --skip-weighted, --skip-noisy
  --render-only             rewrite fairness.md and .svg (and the targets) from <out-dir>/fairness.json
  --out-dir <dir>                                                      (default bench/results)
  --log-level <l>           LOG_LEVEL of the platform's processes      (default warn)
  --platform-env K=V,...    extra environment for the platform's processes (e.g. FAIRNESS_DEPTH=50)`;

/** Rewrites the targets, fairness.md and fairness.svg from an existing fairness.json (the report changed, not the run). */
async function render(outDir: string): Promise<number> {
  const stored = JSON.parse(await readFile(join(outDir, 'fairness.json'), 'utf8')) as FairnessResults;
  const results: FairnessResults = { ...stored, targets: evaluateFairnessTargets(stored) };
  await writeFile(join(outDir, 'fairness.json'), `${JSON.stringify(results, null, 2)}\n`);
  await writeFile(join(outDir, 'fairness.svg'), renderFairnessChart(results));
  await writeFile(join(outDir, 'fairness.md'), renderFairnessMarkdown(results, 'fairness.svg'));
  for (const t of results.targets) {
    process.stderr.write(
      `${t.met === null ? '  n/a  ' : t.met ? '  MET  ' : 'NOT MET'}  ${t.name}: ${t.measured}\n`,
    );
  }
  return results.ok ? 0 : 1;
}

const uptime = () => {
  try {
    return execFileSync('uptime', { encoding: 'utf8' }).trim();
  } catch {
    return 'unknown';
  }
};

export async function fairnessMain(argv: readonly string[]): Promise<number> {
  const parsed = parseScenarioArgs(
    argv,
    {
      fairness: { type: 'boolean' },
      quick: { type: 'boolean' },
      orders: { type: 'string' },
      'weighted-orders': { type: 'string' },
      'quiet-seconds': { type: 'string' },
      'steady-rate': { type: 'string' },
      'slice-seconds': { type: 'string' },
      weights: { type: 'string' },
      'order-size': { type: 'string' },
      rounds: { type: 'string' },
      'skip-fifo': { type: 'boolean' },
      'skip-weighted': { type: 'boolean' },
      'skip-noisy': { type: 'boolean' },
      'render-only': { type: 'boolean' },
      'out-dir': { type: 'string' },
      'log-level': { type: 'string' },
      'platform-env': { type: 'string' },
    },
    Args,
    FAIRNESS_USAGE,
  );
  if (!parsed.ok) return parsed.exitCode;
  const a = parsed.args;
  const orders = a.orders ?? (a.quick ? 5_000 : 100_000);
  const weightedOrders = a['weighted-orders'] ?? (a.quick ? 2_000 : Math.max(1_000, Math.round(orders / 5)));
  const quietS = a['quiet-seconds'] ?? (a.quick ? 8 : 20);
  const [heavyWeight, lightWeight] = a.weights.split(':').map(Number) as [number, number];
  const platformEnv = Object.fromEntries(
    (a['platform-env'] ?? '')
      .split(',')
      .filter(Boolean)
      .map((kv) => [kv.slice(0, kv.indexOf('=')), kv.slice(kv.indexOf('=') + 1)]),
  );
  const options = {
    orders,
    weightedOrders,
    quietS,
    steadyRatePerS: a['steady-rate'],
    sliceS: a['slice-seconds'],
    weights: a.weights,
    orderSize: a['order-size'],
    platformEnv,
  };

  const outDir = resolve(ROOT, a['out-dir']);
  if (a['render-only']) return render(outDir);
  const started = new Date();
  await mkdir(outDir, { recursive: true });
  const progress = createProgress();
  const monitor = createMonitor();
  monitor.watch('bench', process.pid);
  monitor.watchGroup('postgres', ['postgres']);
  const live = new Set<{ close(): Promise<void> }>();
  const notes: string[] = [];
  const interrupt = (signal: NodeJS.Signals) => {
    progress.step(`${signal}: stopping ${live.size} running stack(s) and cleaning up`);
    void Promise.allSettled([...live].map((s) => s.close())).then(() => process.exit(130));
  };
  process.once('SIGINT', interrupt);
  process.once('SIGTERM', interrupt);

  const uptimeStart = uptime();
  progress.step('machine');
  const machine = await describeMachine();
  progress.done(`${machine.nproc} × ${machine.cpuModel}; uptime: ${uptimeStart}`);

  const common = {
    quietS,
    steadyRatePerS: a['steady-rate'],
    sliceS: a['slice-seconds'],
    orderSize: a['order-size'],
    logLevel: a['log-level'],
    platformEnv,
    monitor,
    progress,
    live,
    notes,
  };
  const failures: string[] = [];
  const attempt = async <T>(what: string, fn: () => Promise<T>): Promise<T | undefined> => {
    try {
      return await fn();
    } catch (err) {
      const message = err instanceof Error ? err.message : String(err);
      failures.push(`${what}: ${message}`);
      progress.done(`${what} FAILED: ${message.split('\n')[0]}`);
      return undefined;
    }
  };
  const fairRuns: NoisyResult[] = [];
  const fifoRuns: NoisyResult[] = [];
  let weighted: WeightedResult | undefined;
  for (let round = 0; round < (a['skip-noisy'] ? 0 : a.rounds); round++) {
    // Alternate which goes first, so a machine that gets busier (or quieter) favours neither.
    const order = a['skip-fifo'] ? [true] : round % 2 === 0 ? [true, false] : [false, true];
    for (const fairness of order) {
      const r = await attempt(`noisy neighbour, FAIRNESS=${fairness}, round ${round + 1}`, () =>
        runNoisy({ ...common, fairness, orders }),
      );
      if (r) (fairness ? fairRuns : fifoRuns).push(r);
    }
  }
  const [fair, fifo] = [fairRuns[0], fifoRuns[0]];
  if (!a['skip-weighted']) {
    weighted = await attempt('weighted', () =>
      runWeighted({ ...common, orders: weightedOrders, heavyWeight, lightWeight }),
    );
  }
  monitor.close();

  const finished = new Date();
  const verified =
    failures.length === 0 &&
    [...fairRuns, ...fifoRuns, weighted].every((x) => x === undefined || x.verification.ok);
  const partial = {
    format: 'conveyor-fairness/1' as const,
    startedAt: started.toISOString(),
    finishedAt: finished.toISOString(),
    wallS: Math.round((finished.getTime() - started.getTime()) / 1000),
    command: ['npm run bench --', ...argv].join(' '),
    machine,
    uptime: { start: uptimeStart, end: uptime() },
    options,
    ...(fair ? { fair } : {}),
    ...(fifo ? { fifo } : {}),
    rounds: roundSummaries(fairRuns, fifoRuns),
    laterRounds: [...fairRuns.slice(1), ...fifoRuns.slice(1)],
    notes,
    ...(weighted ? { weighted } : {}),
    verified,
  };
  const results: FairnessResults = { ...partial, targets: evaluateFairnessTargets(partial), ok: verified };
  const jsonFile = join(outDir, 'fairness.json');
  const svgFile = join(outDir, 'fairness.svg');
  const mdFile = join(outDir, 'fairness.md');
  await writeFile(jsonFile, `${JSON.stringify(results, null, 2)}\n`);
  await writeFile(svgFile, renderFairnessChart(results));
  // The markdown links the chart relative to itself (both live in the out dir).
  await writeFile(mdFile, renderFairnessMarkdown(results, relative(outDir, svgFile)));
  progress.step(
    `results: ${relative(ROOT, jsonFile)}, ${relative(ROOT, mdFile)}, ${relative(ROOT, svgFile)}`,
  );
  for (const t of results.targets) {
    progress.done(`${t.met === null ? '  n/a  ' : t.met ? '  MET  ' : 'NOT MET'}  ${t.name}: ${t.measured}`);
  }
  if (!results.ok) {
    const problems = [
      ...failures,
      ...[...fairRuns, ...fifoRuns, weighted].flatMap((x) => x?.verification.problems ?? []),
    ];
    process.stderr.write(`\nFAIRNESS BENCHMARK FAILED:\n${problems.map((f) => `  - ${f}`).join('\n')}\n`);
    return 1;
  }
  return 0;
}
