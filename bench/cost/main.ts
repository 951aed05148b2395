import { mkdir, writeFile } from 'node:fs/promises';
import { join, relative, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { fileURLToPath } from 'node:url';
import { z } from 'zod';
import { describeMachine } from '../machine.ts';
import { createMonitor } from '../monitor.ts';
import { createProgress } from '../progress.ts';
import { costDrain, type CostRun } from './drain.ts';
import { renderCostMarkdown, summarize, type CostResults } from './report.ts';

/**
 * `npm run bench -- --cost`: issue #25's measurement. Pre-enqueues `--orders` orders on the paused
 * `orders` queue, drains them with one uncapped `workers/main.ts` on a private redis-server and an
 * isolated schema, and reports what each order cost: Redis commands by name and Redis CPU, PostgreSQL
 * write transactions, rows per table, WAL and backend CPU, the worker's CPU, the drain rate — every
 * run counted afterwards (nothing lost, nothing doubled). `--ab KEY=VALUE,…` runs the baseline and
 * that variant (extra worker environment) alternately, `--runs` times each, on a fresh stack each time.
 * Writes `<out>/cost-latest.md` and `cost-latest.json`.
 */

const ROOT = fileURLToPath(new URL('../../', import.meta.url));

const envPairs = z
  .string()
  .regex(/^([A-Z][A-Z0-9_]*=[^,]*)(,[A-Z][A-Z0-9_]*=[^,]*)*$/, 'KEY=VALUE[,KEY=VALUE...]')
  .transform((s) =>
    Object.fromEntries(
      s.split(',').map((kv) => [kv.slice(0, kv.indexOf('=')), kv.slice(kv.indexOf('=') + 1)]),
    ),
  );

const Args = z.object({
  cost: z.boolean().default(true),
  orders: z.coerce.number().int().min(100).max(1_000_000).default(20_000),
  warmup: z.coerce.number().int().min(10).optional(),
  ab: envPairs.optional(),
  base: envPairs.optional(),
  runs: z.coerce.number().int().min(1).max(20).optional(),
  monitor: z.string().min(1).optional(),
  'cpu-prof': z.string().min(1).optional(),
  'out-dir': z.string().min(1).default('bench/results'),
  'log-level': z.enum(['fatal', 'error', 'warn', 'info']).default('warn'),
});

export const COST_USAGE = `npm run bench -- --cost [options]
  --orders <n>            orders pre-enqueued and drained per run              (default 20000)
  --warmup <n>            orders drained first, not measured                   (default orders/10, at most 2000)
  --ab K=V[,K=V...]       also run this variant (extra worker environment), alternating with the baseline
  --base K=V[,K=V...]     environment of both (the baseline's own settings)
  --runs <k>              runs of each                                         (default 1; 2 with --ab)
  --monitor <file>        capture every Redis command of each window (MONITOR) to <file>.<run>.jsonl and
                          attribute them to their origin (script or command, queue); slows Redis — use a
                          few hundred orders, and not for CPU numbers
  --cpu-prof <dir>        run the worker with --cpu-prof into <dir>/cost-<variant>.workers-1/ (the whole
                          process: boot, warm-up, window); slows the worker — not for CPU numbers
  --out-dir <dir>                                                              (default bench/results)
  --log-level <l>         LOG_LEVEL of the worker process                      (default warn)`;

const label = (env: Record<string, string>) =>
  Object.entries(env)
    .map(([k, v]) => `${k}=${v}`)
    .join(',');

export async function costMain(argv: readonly string[]): Promise<number> {
  if (argv.includes('--help')) {
    process.stdout.write(`${COST_USAGE}\n`);
    return 0;
  }
  let a: z.infer<typeof Args>;
  try {
    const { values } = parseArgs({
      args: [...argv],
      strict: true,
      options: {
        cost: { type: 'boolean' },
        orders: { type: 'string' },
        warmup: { type: 'string' },
        ab: { type: 'string' },
        base: { type: 'string' },
        runs: { type: 'string' },
        monitor: { type: 'string' },
        'cpu-prof': { type: 'string' },
        'out-dir': { type: 'string' },
        'log-level': { type: 'string' },
      },
    });
    const parsed = Args.safeParse(values);
    if (!parsed.success) {
      throw new Error(
        `invalid arguments:\n${parsed.error.issues.map((i) => `  --${i.path.join('.')}: ${i.message}`).join('\n')}`,
      );
    }
    a = parsed.data;
  } catch (err) {
    process.stderr.write(`${(err as Error).message}\n\n${COST_USAGE}\n`);
    return 2;
  }
  const started = new Date();
  const progress = createProgress();
  const monitor = createMonitor();
  const live = new Set<{ close(): Promise<unknown> }>();
  const interrupt = (signal: NodeJS.Signals) => {
    progress.step(`${signal}: stopping the running stack and cleaning up`);
    void Promise.allSettled([...live].map((s) => s.close())).then(() => process.exit(130));
  };
  process.once('SIGINT', interrupt);
  process.once('SIGTERM', interrupt);

  const machine = await describeMachine();
  const base = a.base ?? {};
  const variants = [{ name: 'baseline', env: base }];
  if (a.ab) variants.push({ name: label(a.ab), env: { ...base, ...a.ab } });
  const runsEach = a.runs ?? (a.ab ? 2 : 1);
  const warmup = a.warmup ?? Math.min(2_000, Math.max(10, Math.round(a.orders / 10)));
  const runs: CostRun[] = [];
  try {
    for (let i = 0; i < runsEach; i++) {
      for (const v of variants) {
        progress.step(`run ${runs.length + 1}/${runsEach * variants.length}: ${v.name}`);
        const run = await costDrain({
          variant: v.name,
          env: v.env,
          orders: a.orders,
          warmup,
          logLevel: a['log-level'],
          monitor,
          live,
          ...(a.monitor ? { monitorFile: `${a.monitor}.${runs.length + 1}.jsonl` } : {}),
          ...(a['cpu-prof'] ? { cpuProfDir: a['cpu-prof'] } : {}),
          onStep: (m) => progress.step(`  ${m}`),
        });
        progress.done(
          `${run.ordersPerS} orders/s, ${run.redis.commandsPerOrder} Redis commands and ${run.redis.cpuMsPerOrder} ms Redis CPU, ` +
            `${run.worker.cpuMsPerOrder} ms worker CPU, ${run.pg.walBytesPerOrder ?? 'n/a'} B WAL per order` +
            (run.verified.ok ? '' : ` — VERIFICATION FAILED: ${run.verified.problems.join('; ')}`),
        );
        runs.push(run);
      }
    }
  } finally {
    monitor.close();
  }
  const results: CostResults = {
    format: 'conveyor-cost/1',
    startedAt: started.toISOString(),
    wallS: Math.round((Date.now() - started.getTime()) / 1000),
    command: ['npm run bench --', ...argv].join(' '),
    machine: {
      nproc: machine.nproc,
      cpuModel: machine.cpuModel,
      loadAverageAtStart: machine.loadAverageAtStart,
    },
    orders: a.orders,
    warmup,
    variants,
    runs,
    summary: variants.map((v) =>
      summarize(
        v.name,
        runs.filter((r) => r.variant === v.name),
      ),
    ),
    ok: runs.every((r) => r.verified.ok),
  };
  const outDir = resolve(ROOT, a['out-dir']);
  await mkdir(outDir, { recursive: true });
  const md = join(outDir, 'cost-latest.md');
  await writeFile(join(outDir, 'cost-latest.json'), `${JSON.stringify(results, null, 2)}\n`);
  await writeFile(md, renderCostMarkdown(results));
  progress.step(`results: ${relative(ROOT, md)} (+ .json)`);
  if (!results.ok) {
    process.stderr.write(
      `\nCOST BENCH VERIFICATION FAILED:\n${runs
        .flatMap((r) => r.verified.problems.map((p) => `  - ${r.variant}: ${p}`))
        .join('\n')}\n`,
    );
    return 1;
  }
  return 0;
}
