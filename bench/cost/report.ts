import type { CostRun } from './drain.ts';

/** What `npm run bench -- --cost` writes to `cost-latest.json`. */
export interface CostResults {
  format: 'conveyor-cost/1';
  startedAt: string;
  wallS: number;
  command: string;
  machine: { nproc: number; cpuModel: string; loadAverageAtStart: number };
  orders: number;
  warmup: number;
  /** `baseline`, then the variant when `--ab` was given. */
  variants: { name: string; env: Record<string, string> }[];
  /** Every drain, in the order run (A/B alternate). */
  runs: CostRun[];
  summary: VariantSummary[];
  ok: boolean;
}

/** One metric of a variant: the median of its runs and their range. */
export interface Spread {
  median: number;
  min: number;
  max: number;
}

export interface VariantSummary {
  variant: string;
  runs: number;
  metrics: Record<MetricKey, Spread | null>;
  /** Redis commands per order by name, medians over the runs. */
  redisByCommand: { command: string; perOrder: number }[];
}

/** The per-order metrics compared, in the table's order; `lowerIsBetter` false for the drain rate. */
export const METRICS = [
  {
    key: 'redisCommands',
    label: 'Redis commands / order',
    digits: 2,
    get: (r: CostRun) => r.redis.commandsPerOrder,
  },
  {
    key: 'redisScripts',
    label: 'Redis script calls / order',
    digits: 2,
    get: (r: CostRun) => r.redis.scriptsPerOrder,
  },
  { key: 'redisCpuMs', label: 'Redis CPU ms / order', digits: 3, get: (r: CostRun) => r.redis.cpuMsPerOrder },
  {
    key: 'workerCpuMs',
    label: 'worker CPU ms / order',
    digits: 3,
    get: (r: CostRun) => r.worker.cpuMsPerOrder,
  },
  {
    key: 'pgCpuMs',
    label: "PG CPU ms / order (worker's backends)",
    digits: 3,
    get: (r: CostRun) => r.pg.cpuMsPerOrder,
  },
  {
    key: 'pgWriteXacts',
    label: 'PG write transactions / order',
    digits: 3,
    get: (r: CostRun) => r.pg.writeTransactionsPerOrder,
  },
  { key: 'pgRows', label: 'PG rows written / order', digits: 2, get: (r: CostRun) => r.pg.rowsPerOrder },
  {
    key: 'walBytes',
    label: "WAL bytes / order (schema's records)",
    digits: 0,
    get: (r: CostRun) => r.pg.walBytesPerOrder,
  },
  {
    key: 'walBytesMachine',
    label: 'WAL bytes / order (whole server)',
    digits: 0,
    get: (r: CostRun) => r.pg.walBytesPerOrderMachineWide,
  },
  {
    key: 'ordersPerS',
    label: 'drain orders/s (higher is better)',
    digits: 0,
    get: (r: CostRun) => r.ordersPerS,
  },
] as const satisfies readonly {
  key: string;
  label: string;
  digits: number;
  get: (r: CostRun) => number | null;
}[];

export type MetricKey = (typeof METRICS)[number]['key'];

function spread(values: (number | null)[]): Spread | null {
  const v = values.filter((x): x is number => x !== null).sort((a, b) => a - b);
  if (v.length === 0) return null;
  const mid = v.length >> 1;
  const median = v.length % 2 ? v[mid]! : (v[mid - 1]! + v[mid]!) / 2;
  return { median, min: v[0]!, max: v[v.length - 1]! };
}

export function summarize(variant: string, runs: readonly CostRun[]): VariantSummary {
  const metrics = Object.fromEntries(
    METRICS.map((m) => [m.key, spread(runs.map((r) => m.get(r)))]),
  ) as Record<MetricKey, Spread | null>;
  const names = new Set(runs.flatMap((r) => r.redis.byCommand.map((c) => c.command)));
  const redisByCommand = [...names]
    .map((command) => ({
      command,
      perOrder:
        spread(runs.map((r) => r.redis.byCommand.find((c) => c.command === command)?.perOrder ?? 0))
          ?.median ?? 0,
    }))
    .sort((a, b) => b.perOrder - a.perOrder);
  return { variant, runs: runs.length, metrics, redisByCommand };
}

const runsOf = (n: number) => (n === 1 ? '1 run' : `${n} runs`);

const fmt = (n: number, digits: number) =>
  n.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits });

function cell(s: Spread | null, digits: number): string {
  if (!s) return 'n/a';
  if (s.min === s.max) return fmt(s.median, digits);
  return `${fmt(s.median, digits)} (${fmt(s.min, digits)}–${fmt(s.max, digits)})`;
}

function change(a: Spread | null, b: Spread | null): string {
  if (!a || !b || a.median === 0) return '';
  const pct = ((b.median - a.median) / a.median) * 100;
  return `${pct > 0 ? '+' : ''}${pct.toFixed(1)}%`;
}

/** The markdown of `cost-latest.md`: the profile of the baseline, and the before/after table with `--ab`. */
export function renderCostMarkdown(r: CostResults): string {
  const out: string[] = [];
  const base = r.summary[0]!;
  const variant = r.summary[1];
  out.push(`# Cost per order (${r.startedAt})`, '');
  out.push(
    `\`${r.command}\` — ${r.orders.toLocaleString('en-US')} orders pre-enqueued on the paused \`orders\` queue ` +
      `(after ${r.warmup.toLocaleString('en-US')} warm-up orders), drained by one uncapped \`workers/main.ts\` ` +
      `(orders, outbox relay, projections; BullMQ bus) on a private redis-server and an isolated schema, until every ` +
      `order was decided and projected. ${r.machine.nproc} × ${r.machine.cpuModel}, load average at start ` +
      `${r.machine.loadAverageAtStart}. Medians over the runs, (min–max) when they differ. ` +
      `Wall ${r.wallS} s. ${r.ok ? 'Every run verified.' : '**VERIFICATION FAILED** (see the runs below).'}`,
    '',
  );
  if (variant) {
    out.push(`## Before/after: \`${variant.variant}\``, '');
    out.push(
      `| metric | baseline (${runsOf(base.runs)}) | variant (${runsOf(variant.runs)}) | change |`,
      '|---|---:|---:|---:|',
    );
    for (const m of METRICS) {
      const a = base.metrics[m.key];
      const b = variant.metrics[m.key];
      out.push(`| ${m.label} | ${cell(a, m.digits)} | ${cell(b, m.digits)} | ${change(a, b)} |`);
    }
    out.push('', '| Redis command / order | baseline | variant |', '|---|---:|---:|');
    const names = [...new Set([...base.redisByCommand, ...variant.redisByCommand].map((c) => c.command))];
    for (const name of names) {
      const a = base.redisByCommand.find((c) => c.command === name)?.perOrder ?? 0;
      const b = variant.redisByCommand.find((c) => c.command === name)?.perOrder ?? 0;
      if (a === 0 && b === 0) continue;
      out.push(`| ${name} | ${fmt(a, 3)} | ${fmt(b, 3)} |`);
    }
    out.push('');
  } else {
    out.push('## Per order', '', `| metric | ${base.variant} (${runsOf(base.runs)}) |`, '|---|---:|');
    for (const m of METRICS) out.push(`| ${m.label} | ${cell(base.metrics[m.key], m.digits)} |`);
    out.push('', '| Redis command | per order |', '|---|---:|');
    for (const c of base.redisByCommand) out.push(`| ${c.command} | ${fmt(c.perOrder, 3)} |`);
    out.push('');
  }
  const last = r.runs.find((x) => x.variant === base.variant) ?? r.runs[0]!;
  out.push(`## Rows per table (${last.variant}, one run)`, '');
  out.push('| table | inserted | updated (HOT) | deleted | rows / order |', '|---|---:|---:|---:|---:|');
  for (const t of last.pg.tables)
    out.push(
      `| ${t.table} | ${t.inserted} | ${t.updated} (${t.hotUpdated}) | ${t.deleted} | ${fmt(t.perOrder, 3)} |`,
    );
  if (last.pg.wal) {
    out.push('', `## WAL of the schema by record kind (${last.variant}, one run)`, '');
    out.push('| record | records / order | bytes / order |', '|---|---:|---:|');
    for (const k of last.pg.wal.byKind.slice(0, 15))
      out.push(`| ${k.kind} | ${fmt(k.records / last.orders, 3)} | ${fmt(k.bytes / last.orders, 0)} |`);
    out.push(
      '',
      `Full-page images: ${fmt(last.pg.wal.fpiBytes / last.orders, 0)} bytes / order of the above (checkpoint timing makes this vary).`,
    );
  }
  for (const x of r.runs.filter((run) => run.attribution)) {
    out.push('', `## Redis commands by origin (${x.variant}, MONITOR capture)`, '');
    out.push(
      "Redis time share: each origin's commands weighted by their mean time per call over the window (INFO commandstats); a script's own overhead is not included, and MONITOR itself inflates and distorts the per-call times — weigh with an unmonitored run's `usecPerCall` (cost-latest.json) for real shares.",
      '',
      '| origin (script or command @ queue) | calls / order | commands / order | Redis time share | inside, per order |',
      '|---|---:|---:|---:|---|',
    );
    const usec = x.redis.usecPerCall;
    const cost = (a: NonNullable<CostRun['attribution']>[number]) =>
      Object.entries(a.inner).reduce((sum, [c, n]) => sum + n * (usec[c] ?? 0), 0) +
      // EXEC's time is the commands it ran, counted under their own origins.
      (Object.keys(a.inner).length === 0 && a.origin !== 'exec'
        ? a.callsPerOrder * (usec[a.origin.split(' ')[0]!] ?? 0)
        : 0);
    const totalCost = x.attribution!.reduce((sum, a) => sum + cost(a), 0) || 1;
    for (const a of x.attribution!.filter((a) => a.commandsPerOrder >= 0.001)) {
      const inner = Object.entries(a.inner)
        .sort((p, q) => q[1] - p[1])
        .map(([c, n]) => `${c} ${n}`)
        .join(', ');
      out.push(
        `| ${a.origin} | ${a.callsPerOrder} | ${a.commandsPerOrder} | ${((cost(a) / totalCost) * 100).toFixed(1)}% | ${inner} |`,
      );
    }
  }
  out.push('', '## Runs', '');
  out.push(
    '| # | variant | s | orders/s | Redis cmds | Redis CPU ms | worker CPU ms | PG CPU ms | WAL B (schema / server) | stats settled | verified |',
    '|---:|---|---:|---:|---:|---:|---:|---:|---:|---|---|',
  );
  r.runs.forEach((x, i) =>
    out.push(
      `| ${i + 1} | ${x.variant} | ${x.seconds} | ${x.ordersPerS} | ${x.redis.commandsPerOrder} | ${x.redis.cpuMsPerOrder} | ` +
        `${x.worker.cpuMsPerOrder} | ${x.pg.cpuMsPerOrder} | ${x.pg.walBytesPerOrder ?? 'n/a'} / ${x.pg.walBytesPerOrderMachineWide} | ` +
        `${x.pg.statsSettled ? 'yes' : 'no'} | ${x.verified.ok ? 'ok' : x.verified.problems.join('; ')} |`,
    ),
  );
  out.push(
    '',
    'Notes: Redis counts come from INFO commandstats of the private redis-server (a Lua script counts as one ' +
      'EVALSHA plus every command it runs). Worker CPU is utime+stime of the `workers/main.ts` process over the ' +
      "window. PG CPU is the worker's own backends (matched by client port), not the WAL writer, checkpointer or " +
      "autovacuum. Schema WAL is read with pg_walinspect: records touching the schema's relations plus their " +
      'commit records; the whole-server WAL also holds other sessions on this shared machine. CPU numbers are ' +
      'noisy on a shared 2-core machine: compare medians of alternated runs.',
    '',
  );
  return out.join('\n');
}
