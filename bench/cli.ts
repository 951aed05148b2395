import { parseArgs } from 'node:util';
import { z } from 'zod';
import { commaSeparated } from '../shared/config/config.ts';

/**
 * The benchmark's command line, parsed once with zod. `--quick` swaps every default for a smoke-sized
 * one (the whole run stays under a minute); explicit flags still win over the quick defaults.
 */

const BUSES = ['bullmq', 'kafka', 'rabbitmq', 'sqs'] as const;
export type BenchBus = (typeof BUSES)[number];

const intList = (min: number) =>
  commaSeparated.transform((parts) => parts.map(Number)).pipe(z.array(z.number().int().min(min)).min(1));

const busList = commaSeparated.pipe(z.array(z.enum(BUSES)).min(1));

/** Flags as typed on the command line (all strings), before defaults. */
const RawArgs = z.object({
  quick: z.boolean().default(false),
  duration: z.coerce.number().positive().optional(),
  connections: z.coerce.number().int().min(1).optional(),
  rate: intList(1).optional(),
  'e2e-rate': z.coerce.number().int().min(1).optional(),
  'order-size': z.coerce.number().int().min(1).max(100).optional(),
  bus: busList.optional(),
  workers: intList(1).optional(),
  'api-replicas': intList(1).optional(),
  backlog: z.coerce.number().int().min(10).optional(),
  'baseline-jobs': z.coerce.number().int().min(10).optional(),
  'out-dir': z.string().min(1).optional(),
  'cpu-prof': z.boolean().default(false),
  'log-level': z.enum(['fatal', 'error', 'warn', 'info']).default('warn'),
  'skip-baselines': z.boolean().default(false),
  'skip-api-rates': z.boolean().default(false),
  'platform-env': z
    .string()
    .regex(/^([A-Z][A-Z0-9_]*=[^,]*)(,[A-Z][A-Z0-9_]*=[^,]*)*$/, 'KEY=VALUE[,KEY=VALUE...]')
    .optional(),
});

/** The resolved options every phase receives. */
export interface BenchOptions {
  quick: boolean;
  /** Seconds of each HTTP load phase (fixed rates, saturation, end-to-end). */
  durationS: number;
  /** autocannon connections. */
  connections: number;
  /** Offered rates (req/s) of the API enqueue phase; saturation is always measured too. */
  ratesPerS: number[];
  /** Offered rate of the end-to-end latency phase. */
  e2eRatePerS: number;
  /** Items per order. */
  orderSize: number;
  buses: BenchBus[];
  /** Worker process counts compared side by side (on the first bus). */
  workerCounts: number[];
  /** API replica counts compared side by side (on the first bus). */
  apiReplicaCounts: number[];
  /** Orders pre-enqueued for each drain measurement (Conveyor and the baselines). */
  backlog: number;
  /** Jobs for each baseline's drain. */
  baselineJobs: number;
  outDir: string;
  cpuProf: boolean;
  logLevel: 'fatal' | 'error' | 'warn' | 'info';
  skipBaselines: boolean;
  skipApiRates: boolean;
  /** Extra environment for the platform's processes (tuning experiments, e.g. ORDERS_CONCURRENCY=200). */
  platformEnv: Record<string, string>;
}

export const USAGE = `npm run bench -- [options]
  --quick                 smoke-sized run (< 1 min)
  --duration <s>          seconds per HTTP load phase            (default 10, quick 2)
  --connections <n>       autocannon connections                 (default 16, quick 8)
  --rate <r,r,..>         offered rates of the API phase, req/s  (default 1000,2500,5000; quick 1000)
  --e2e-rate <r>          offered rate of the end-to-end latency phase (default 1000; quick 300)
  --order-size <n>        items per order                        (default 3)
  --bus <b,b,..>          bullmq,kafka,rabbitmq,sqs               (default all four; quick bullmq)
  --workers <n,n,..>      worker processes compared              (default 1,2; quick 1)
  --api-replicas <n,n,..> API replicas compared                  (default 1,2; quick 1)
  --backlog <n>           orders per drain measurement           (default 20000; quick 1000)
  --baseline-jobs <n>     jobs per baseline drain                (default = backlog)
  --out-dir <dir>         where results go                       (default bench/results)
  --cpu-prof              write V8 CPU profiles of the API and worker processes
  --log-level <l>         LOG_LEVEL of the platform's processes  (default warn)
  --platform-env K=V,...  extra environment for the platform's processes (e.g. ORDERS_CONCURRENCY=200)
  --skip-baselines, --skip-api-rates
  --scaling               the scaling scenario instead: CPU-limited replicas and KEDA's rule replayed
                          (npm run bench -- --scaling --help)
  --fairness              the fairness scenario instead: a noisy neighbour with and without FAIRNESS,
                          weighted tenants (npm run bench -- --fairness --help)
  --results               the results-without-polling scenario instead: memory per open wait/stream,
                          latency with open streams, webhook throughput (npm run bench -- --results --help)
  --search                the search scenario instead: 10 million orders, p95 of every console filter
                          and its query plan (npm run bench -- --search --help)
  --bulk                  the bulk-redrive scenario instead: orders' latency during a bulk redrive of
                          dead letters (npm run bench -- --bulk --help)
  --cost                  the cost-per-order scenario instead: Redis commands and CPU, PostgreSQL rows and
                          WAL, worker CPU per order of a drain; --ab K=V for a before/after of a setting
                          (npm run bench -- --cost --help)`;

/**
 * Parses `argv` (without node and script) into {@link BenchOptions}.
 * @throws {Error} listing every invalid flag.
 */
export function parseBenchArgs(argv: readonly string[]): BenchOptions {
  const { values } = parseArgs({
    args: [...argv],
    strict: true,
    options: {
      quick: { type: 'boolean' },
      duration: { type: 'string' },
      connections: { type: 'string' },
      rate: { type: 'string' },
      'e2e-rate': { type: 'string' },
      'order-size': { type: 'string' },
      bus: { type: 'string' },
      workers: { type: 'string' },
      'api-replicas': { type: 'string' },
      backlog: { type: 'string' },
      'baseline-jobs': { type: 'string' },
      'out-dir': { type: 'string' },
      'cpu-prof': { type: 'boolean' },
      'log-level': { type: 'string' },
      'skip-baselines': { type: 'boolean' },
      'skip-api-rates': { type: 'boolean' },
      'platform-env': { type: 'string' },
    },
  });
  const parsed = RawArgs.safeParse(values);
  if (!parsed.success) {
    throw new Error(
      `invalid arguments:\n${parsed.error.issues.map((i) => `  --${i.path.join('.')}: ${i.message}`).join('\n')}\n\n${USAGE}`,
    );
  }
  const a = parsed.data;
  const q = a.quick;
  const backlog = a.backlog ?? (q ? 1_000 : 20_000);
  return {
    quick: q,
    durationS: a.duration ?? (q ? 2 : 10),
    connections: a.connections ?? (q ? 8 : 16),
    ratesPerS: a.rate ?? (q ? [1_000] : [1_000, 2_500, 5_000]),
    e2eRatePerS: a['e2e-rate'] ?? (q ? 300 : 1_000),
    orderSize: a['order-size'] ?? 3,
    buses: a.bus ?? (q ? ['bullmq'] : [...BUSES]),
    workerCounts: a.workers ?? (q ? [1] : [1, 2]),
    apiReplicaCounts: a['api-replicas'] ?? (q ? [1] : [1, 2]),
    backlog,
    baselineJobs: a['baseline-jobs'] ?? backlog,
    outDir: a['out-dir'] ?? 'bench/results',
    cpuProf: a['cpu-prof'],
    logLevel: a['log-level'],
    skipBaselines: a['skip-baselines'],
    skipApiRates: a['skip-api-rates'],
    platformEnv: Object.fromEntries(
      (a['platform-env'] ?? '')
        .split(',')
        .filter(Boolean)
        .map((kv) => [kv.slice(0, kv.indexOf('=')), kv.slice(kv.indexOf('=') + 1)]),
    ),
  };
}
