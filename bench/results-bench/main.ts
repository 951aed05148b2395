import { execFileSync } from 'node:child_process';
import { mkdir, writeFile } from 'node:fs/promises';
import { join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { z } from 'zod';
import { commaSeparated } from '../../shared/config/config.ts';
import { describeMachine } from '../machine.ts';
import { createMonitor } from '../monitor.ts';
import { createProgress } from '../progress.ts';
import { runLatency, runMemory, runWebhooks, type PhaseEnv } from './phases.ts';
import { renderResultsMarkdown, resultProblems, type ResultsBenchResults } from './report.ts';
import { parseScenarioArgs } from '../scenario-args.ts';

/**
 * `npm run bench -- --results`: issue #22's measurements on the real stack — memory per open
 * `Prefer: wait` and per open lifecycle stream, the pipeline's latency with and without 1,000 open
 * streams, and webhook delivery throughput to a local receiver — written to
 * `<out>/results-latest.json` (and `results-<start time>.json`) and `results-latest.md`. Exits 1 when a check failed (a wait answered
 * early, a stream ended, a delivery missing or doubled).
 */

const ROOT = fileURLToPath(new URL('../../', import.meta.url));

const Args = z.object({
  results: z.boolean().default(true),
  quick: z.boolean().default(false),
  connections: z.coerce.number().int().min(10).max(20_000).optional(),
  'wait-seconds': z.coerce.number().int().min(10).max(30).default(30),
  rate: z.coerce.number().int().min(1).max(5_000).default(200),
  'latency-seconds': z.coerce.number().min(2).max(120).optional(),
  'webhook-orders': z.coerce.number().int().min(10).max(100_000).optional(),
  endpoints: commaSeparated
    .transform((parts) => parts.map(Number))
    .pipe(z.array(z.number().int().min(1).max(100)).min(1))
    .optional(),
  'order-size': z.coerce.number().int().min(1).max(100).default(3),
  'skip-memory': z.boolean().default(false),
  'skip-latency': z.boolean().default(false),
  'skip-webhooks': z.boolean().default(false),
  'out-dir': z.string().min(1).default('bench/results'),
  'log-level': z.enum(['fatal', 'error', 'warn', 'info']).default('warn'),
  'platform-env': z
    .string()
    .regex(/^([A-Z][A-Z0-9_]*=[^,]*)(,[A-Z][A-Z0-9_]*=[^,]*)*$/, 'KEY=VALUE[,KEY=VALUE...]')
    .optional(),
});

export const RESULTS_USAGE = `npm run bench -- --results [options]
  --quick                  smoke-sized (200 connections, 4 s latency phases, 500 orders to 2 endpoints)
  --connections <n>        open waits / open streams                  (default 1000)
  --wait-seconds <s>       the Prefer: wait of the held GETs          (default 30)
  --rate <r>               orders/s of the latency phases             (default 200)
  --latency-seconds <s>    length of each latency phase               (default 20)
  --webhook-orders <n>     orders posted per endpoint count           (default 5000)
  --endpoints <k,k,..>     endpoint counts of the webhook runs        (default 2,10)
  --order-size <n>         items per order                            (default 3)
  --skip-memory, --skip-latency, --skip-webhooks
  --out-dir <dir>                                                     (default bench/results)
  --log-level <l>          LOG_LEVEL of the platform's processes      (default warn)
  --platform-env K=V,...   extra environment for the platform's processes`;

const uptime = () => {
  try {
    return execFileSync('uptime', { encoding: 'utf8' }).trim();
  } catch {
    return 'unknown';
  }
};

export async function resultsMain(argv: readonly string[]): Promise<number> {
  const parsed = parseScenarioArgs(
    argv,
    {
      results: { type: 'boolean' },
      quick: { type: 'boolean' },
      connections: { type: 'string' },
      'wait-seconds': { type: 'string' },
      rate: { type: 'string' },
      'latency-seconds': { type: 'string' },
      'webhook-orders': { type: 'string' },
      endpoints: { type: 'string' },
      'order-size': { type: 'string' },
      'skip-memory': { type: 'boolean' },
      'skip-latency': { type: 'boolean' },
      'skip-webhooks': { type: 'boolean' },
      'out-dir': { type: 'string' },
      'log-level': { type: 'string' },
      'platform-env': { type: 'string' },
    },
    Args,
    RESULTS_USAGE,
  );
  if (!parsed.ok) return parsed.exitCode;
  const a = parsed.args;
  const q = a.quick;
  const options = {
    connections: a.connections ?? (q ? 200 : 1_000),
    waitSeconds: a['wait-seconds'],
    ratePerS: a.rate,
    latencySeconds: a['latency-seconds'] ?? (q ? 4 : 20),
    webhookOrders: a['webhook-orders'] ?? (q ? 500 : 5_000),
    endpointCounts: a.endpoints ?? (q ? [2] : [2, 10]),
    orderSize: a['order-size'],
    platformEnv: Object.fromEntries(
      (a['platform-env'] ?? '')
        .split(',')
        .filter(Boolean)
        .map((kv) => [kv.slice(0, kv.indexOf('=')), kv.slice(kv.indexOf('=') + 1)]),
    ),
  };

  const started = new Date();
  const outDir = resolve(ROOT, a['out-dir']);
  await mkdir(outDir, { recursive: true });
  const progress = createProgress();
  const monitor = createMonitor();
  monitor.watch('bench', process.pid);
  const live = new Set<{ close(): Promise<void> }>();
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

  const env: PhaseEnv = {
    logLevel: a['log-level'],
    platformEnv: options.platformEnv,
    monitor,
    progress,
    live,
    orderSize: options.orderSize,
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
  const memory = a['skip-memory']
    ? undefined
    : await attempt('memory', () => runMemory(env, options.connections, options.waitSeconds));
  const latency = a['skip-latency']
    ? undefined
    : await attempt('latency', () =>
        runLatency(env, {
          ratePerS: options.ratePerS,
          durationS: options.latencySeconds,
          streams: options.connections,
        }),
      );
  const webhooks = a['skip-webhooks']
    ? undefined
    : await attempt('webhooks', () =>
        runWebhooks(env, { orders: options.webhookOrders, endpointCounts: options.endpointCounts }),
      );
  monitor.close();

  const finished = new Date();
  const partial = {
    format: 'conveyor-results-bench/1' as const,
    startedAt: started.toISOString(),
    finishedAt: finished.toISOString(),
    wallS: Math.round((finished.getTime() - started.getTime()) / 1000),
    command: ['npm run bench --', ...argv].join(' '),
    machine,
    uptime: { start: uptimeStart, end: uptime() },
    options,
    ...(memory ? { memory } : {}),
    ...(latency ? { latency } : {}),
    ...(webhooks ? { webhooks } : {}),
    failures,
  };
  const problems = [...failures, ...resultProblems(partial)];
  const results: ResultsBenchResults = { ...partial, problems, ok: problems.length === 0 };
  const jsonFile = join(outDir, 'results-latest.json');
  const mdFile = join(outDir, 'results-latest.md');
  // The latest, and every run's JSON kept under its start time (runs compared on a busy machine).
  const stamp = started.toISOString().replace(/[:.]/g, '-');
  await writeFile(join(outDir, `results-${stamp}.json`), `${JSON.stringify(results, null, 2)}\n`);
  await writeFile(jsonFile, `${JSON.stringify(results, null, 2)}\n`);
  await writeFile(mdFile, renderResultsMarkdown(results));
  progress.step(`results: ${relative(ROOT, jsonFile)}, ${relative(ROOT, mdFile)} (${results.wallS} s)`);
  if (!results.ok) {
    process.stderr.write(`\nRESULTS BENCHMARK FAILED:\n${problems.map((f) => `  - ${f}`).join('\n')}\n`);
    return 1;
  }
  return 0;
}
