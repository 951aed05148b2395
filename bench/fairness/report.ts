import type { Machine } from '../machine.ts';
import { lineChart, stack } from '../scaling/charts.ts';
import type { LatencyStats, SteadyPhase } from './analysis.ts';
import { NOISY, STEADY, type NoisyResult } from './noisy.ts';
import { HEAVY, LIGHT, type WeightedResult } from './weighted.ts';

/** Everything one `npm run bench -- --fairness` measured (bench/results/fairness.json). */
export interface FairnessResults {
  format: 'conveyor-fairness/1';
  startedAt: string;
  finishedAt: string;
  wallS: number;
  command: string;
  machine: Machine;
  /** `uptime` at the start and the end: other work on this machine skews every number. */
  uptime: { start: string; end: string };
  options: Record<string, unknown>;
  /** The first noisy-neighbour round in full (with FAIRNESS and without). */
  fair?: NoisyResult;
  fifo?: NoisyResult;
  /** Every round's headline numbers (one entry per stack, in the order they ran). */
  rounds: RoundSummary[];
  /** The rounds after the first, in full. */
  laterRounds: NoisyResult[];
  /** What went wrong on the way without failing the run (a stack started twice). */
  notes: string[];
  weighted?: WeightedResult;
  targets: FairnessTarget[];
  verified: boolean;
  ok: boolean;
}

/** One noisy-neighbour round in a few numbers. */
export interface RoundSummary {
  fairness: boolean;
  /** Orders decided per second during the flood (A + B + C). */
  totalPerS: number;
  floodDrainPerS: number;
  /** Per steady tenant: p99 accepted → decided, quiet and during the flood, ms. */
  p99: Record<string, { quiet: number; flood: number; drain: number }>;
  redisCommandsPerOrder: number;
  loadAverage: { start: number; end: number };
}

/** The headline numbers of every round, in the order they ran. */
export function roundSummaries(fair: readonly NoisyResult[], fifo: readonly NoisyResult[]): RoundSummary[] {
  return [...fair, ...fifo]
    .sort((a, b) => a.at.quietFrom - b.at.quietFrom)
    .map((x) => ({
      fairness: x.fairness,
      totalPerS: x.totalPerS,
      floodDrainPerS: x.floodDrainPerS,
      p99: Object.fromEntries(
        x.steady.map((t) => [
          t.tenant,
          {
            quiet: t.quiet.acceptedToDecided.p99,
            flood: t.flood.acceptedToDecided.p99,
            drain: t.floodDrain.acceptedToDecided.p99,
          },
        ]),
      ),
      redisCommandsPerOrder: x.redis.commandsPerOrder,
      loadAverage: x.loadAverage,
    }));
}

/** The median (of an even count, the mean of the two middle values). */
export function median(values: readonly number[]): number {
  if (values.length === 0) return 0;
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

export interface FairnessTarget {
  name: string;
  measured: string;
  met: boolean | null;
}

const row = (cells: readonly (string | number)[]) => `| ${cells.join(' | ')} |`;
const table = (head: readonly string[], rows: readonly (readonly (string | number)[])[]) =>
  [row(head), row(head.map(() => '---')), ...rows.map(row)].join('\n');
const ms = (n: number) =>
  n >= 10_000 ? `${(n / 1000).toFixed(1)} s` : n >= 100 ? `${Math.round(n)}` : n.toFixed(1);
const lat = (s: LatencyStats | undefined) =>
  s && s.n > 0 ? `${ms(s.p50)} / ${ms(s.p99)} / ${ms(s.max)}` : '-';
const times = (a: number, b: number) => (b > 0 ? `${(a / b).toFixed(2)}×` : '-');

/** The targets of issue #21, evaluated on one run. */
export function evaluateFairnessTargets(r: Omit<FairnessResults, 'targets' | 'ok'>): FairnessTarget[] {
  const out: FairnessTarget[] = [];
  const fairRounds = r.rounds.filter((x) => x.fairness);
  const fifoRounds = r.rounds.filter((x) => !x.fairness);
  const many = r.rounds.length > 2;
  if (r.fair) {
    for (const s of r.fair.steady) {
      // With several rounds: the median round's ratio; the first round's details beside it.
      const ratios = fairRounds.map((x) => x.p99[s.tenant]!).map((p) => p.flood / Math.max(1e-9, p.quiet));
      const q = s.quiet.acceptedToDecided.p99;
      const f = s.flood.acceptedToDecided.p99;
      out.push({
        name: `${s.tenant}: p99 accepted → decided during A's flood ≤ 2 × its quiet p99`,
        measured:
          `${many ? `median of ${fairRounds.length} rounds ${median(ratios).toFixed(2)}× (${ratios.map((x) => x.toFixed(2)).join(', ')}); first round: ` : ''}` +
          `${ms(f)} ms vs quiet ${ms(q)} ms (${times(f, q)}) — while A posted ${ms(s.floodIngest.acceptedToDecided.p99)} ms, while A's backlog drained ${ms(s.floodDrain.acceptedToDecided.p99)} ms (${times(s.floodDrain.acceptedToDecided.p99, q)}); scheduled → decided ${ms(s.flood.scheduledToDecided.p99)} vs ${ms(s.quiet.scheduledToDecided.p99)} ms (${times(s.flood.scheduledToDecided.p99, s.quiet.scheduledToDecided.p99)})`,
        met: s.quiet.acceptedToDecided.n > 0 && s.flood.acceptedToDecided.n > 0 ? median(ratios) <= 2 : null,
      });
    }
  }
  if (fairRounds.length > 0 && fifoRounds.length > 0) {
    const a = Math.round(median(fairRounds.map((x) => x.totalPerS)));
    const b = Math.round(median(fifoRounds.map((x) => x.totalPerS)));
    out.push({
      name: 'total throughput with fairness ≥ 90% of the same run without it',
      measured:
        `${a} vs ${b} orders/s decided during the flood (${Math.round((100 * a) / Math.max(1, b))}%)` +
        (many
          ? `, medians of ${fairRounds.length} and ${fifoRounds.length} rounds (fair ${fairRounds.map((x) => x.totalPerS).join(', ')}; FIFO ${fifoRounds.map((x) => x.totalPerS).join(', ')})`
          : `; A drained at ${fairRounds[0]!.floodDrainPerS} vs ${fifoRounds[0]!.floodDrainPerS} orders/s`),
      met: a >= 0.9 * b,
    });
  }
  if (r.weighted) {
    const w = r.weighted;
    const [lo, hi] = [2.7, 3.3].map((x) => (x * weightOf(w, HEAVY)) / 3 / weightOf(w, LIGHT));
    out.push({
      name: `weights ${weightOf(w, HEAVY)}:${weightOf(w, LIGHT)} drain at that ratio ±10% while both have a backlog`,
      measured: `${w.ratio}:1 decided over ${w.window.seconds} s (${w.completions[HEAVY]} vs ${w.completions[LIGHT]}; window from ${w.window.source})${w.dispatchedRatio !== null ? `; dispatched ${w.dispatchedRatio}:1` : ''}`,
      met: w.window.seconds > 0 ? w.ratio >= lo! && w.ratio <= hi! : null,
    });
  }
  const checks = [r.fair, r.fifo, r.weighted].filter((x) => x !== undefined);
  out.push({
    name: `every order reconciled: nothing lost, nothing doubled${many ? ' (first round and weighted shown; every round checked)' : ''}`,
    measured: checks
      .map(
        (c) =>
          `${'fairness' in c ? (c.fairness ? 'FAIRNESS=true' : 'FAIRNESS=false') : 'weighted'}: ${c.verification.ok ? `${c.verification.accepted} ok` : c.verification.problems.join('; ')}`,
      )
      .join(', '),
    met: r.verified && checks.every((c) => c.verification.ok),
  });
  return out;
}

function weightOf(w: WeightedResult, tenant: string): number {
  return Number(new RegExp(`${tenant}:weight=(\\d+)`).exec(w.tenants)?.[1] ?? 1);
}

function steadyRows(
  label: string,
  pick: (p: SteadyPhase) => LatencyStats,
  fair?: NoisyResult,
  fifo?: NoisyResult,
) {
  return STEADY.map((t) => {
    const a = fair?.steady.find((s) => s.tenant === t);
    const b = fifo?.steady.find((s) => s.tenant === t);
    return [
      `${t} ${label}`,
      a ? `${pick(a.quiet).n}` : '-',
      lat(a && pick(a.quiet)),
      lat(a && pick(a.flood)),
      a ? times(pick(a.flood).p99, pick(a.quiet).p99) : '-',
      lat(b && pick(b.quiet)),
      lat(b && pick(b.flood)),
      b ? times(pick(b.flood).p99, pick(b.quiet).p99) : '-',
    ];
  });
}

export function renderFairnessMarkdown(r: FairnessResults, chartFile: string): string {
  const m = r.machine;
  const out: string[] = [];
  const { fair, fifo, weighted } = r;
  out.push(`# Fairness between producers — ${r.startedAt}`, '');
  out.push(
    `Machine: ${m.nproc} × ${m.cpuModel}, ${m.memoryGb} GB RAM; Node ${m.node}, Redis ${m.redis} (a private redis-server per stack, no persistence, like the machine's), PostgreSQL ${m.postgres} (${m.postgresDurability}). ` +
      `\`uptime\` at the start: \`${r.uptime.start}\`; at the end: \`${r.uptime.end}\`. One API process and one worker process per stack; the load generator, Redis and PostgreSQL share the same cores (and whatever else ran on the machine).`,
    '',
    `Run: \`${r.command}\` — wall time ${r.wallS} s. Every order counted afterwards: ${r.verified ? '**nothing lost, nothing doubled**' : '**VERIFICATION FAILED**'}.`,
    '',
    `![fairness timeline](${chartFile})`,
    '',
    ...(r.notes.length > 0 ? ['Notes:', '', ...r.notes.map((n) => `- ${n}`), ''] : []),
  );

  if (fair || fifo) {
    const f = fair ?? fifo!;
    out.push(
      `## Noisy neighbour: A posts ${f.flood.orders.toLocaleString('en')} orders in batches, B and C ${r.options.steadyRatePerS} orders/s each`,
      '',
      `B and C post single orders open-loop at evenly spaced times (bench/open-loop.ts, a worker thread each) from the start: ${r.options.quietS} s alone (quiet), then through A's whole flood until A's last order is decided. ` +
        'Latencies in ms, p50 / p99 / max, from the write model: `accepted_at` (the API) → `decided_at` (the order worker\'s transaction); "scheduled" counts from the time the request was due to leave.',
      '',
      table(
        [
          'tenant, measure',
          'quiet orders',
          'fair: quiet',
          'fair: during flood',
          'fair: p99 flood ÷ quiet',
          'FIFO: quiet',
          'FIFO: during flood',
          'FIFO: p99 flood ÷ quiet',
        ],
        [
          ...steadyRows('accepted → decided', (p) => p.acceptedToDecided, fair, fifo),
          ...steadyRows('scheduled → decided', (p) => p.scheduledToDecided, fair, fifo),
          ...steadyRows('scheduled → accepted (API)', (p) => p.scheduledToAccepted, fair, fifo),
          ...steadyRows('accepted → projected', (p) => p.acceptedToProjected, fair, fifo),
        ],
      ),
      '',
    );
    const phases = [
      ['quiet', (t: NoisyResult['steady'][number]) => t.quiet],
      ['A posting', (t: NoisyResult['steady'][number]) => t.floodIngest],
      ["A's backlog draining", (t: NoisyResult['steady'][number]) => t.floodDrain],
    ] as const;
    const stageRows = [fair, fifo]
      .filter((x) => x !== undefined)
      .flatMap((x) =>
        x.steady.flatMap((t) =>
          phases.map(([label, pick]) => {
            const p = pick(t);
            const g = p.stages;
            return [
              `${x.fairness ? 'fair' : 'FIFO'} · ${t.tenant} · ${label}`,
              `${g.orders} of ${p.acceptedToDecided.n} (${g.held} held)`,
              lat(p.acceptedToDecided),
              lat(g.api),
              lat(g.queue),
              lat(g.worker),
            ];
          }),
        ),
      );
    out.push(
      "Where B's and C's accepted → decided goes, by BullMQ's own job timestamps (`timestamp`: the API built the job after admitting it; `processedOn`: a worker took it). \"A posting\" = scheduled while A's batches were still being answered; \"draining\" = after, until A's last order was decided. p50 / p99 / max ms:",
      '',
      table(
        [
          'stack · tenant · phase',
          'orders with a job record',
          'accepted → decided',
          'in the API (→ job built)',
          'in Redis (its turn + the wait list)',
          'in the worker (→ decided)',
        ],
        stageRows,
      ),
      '',
    );
    const col = (fn: (x: NoisyResult) => string | number) => [fair ? fn(fair) : '-', fifo ? fn(fifo) : '-'];
    const cpu = (x: NoisyResult, prefix: string) =>
      Object.entries(x.cpuMsPerOrder)
        .filter(([k]) => k.startsWith(prefix))
        .reduce((s, [, v]) => s + v, 0)
        .toFixed(3);
    const ratio = (fn: (x: NoisyResult) => number) =>
      fair && fifo ? `${((100 * fn(fair)) / Math.max(1e-9, fn(fifo))).toFixed(0)}%` : '-';
    out.push(
      table(
        ['', 'FAIRNESS=true', 'FAIRNESS=false', 'fair ÷ FIFO'],
        [
          [
            'A: accepted by the API, orders/s',
            ...col((x) => x.flood.acceptedPerS),
            ratio((x) => x.flood.acceptedPerS),
          ],
          [
            "A: drained (A's first batch → A's last decided), orders/s",
            ...col((x) => x.floodDrainPerS),
            ratio((x) => x.floodDrainPerS),
          ],
          [
            'total decided during the flood (A + B + C), orders/s',
            ...col((x) => x.totalPerS),
            ratio((x) => x.totalPerS),
          ],
          [
            'Redis commands per order (inside scripts counted)',
            ...col((x) => x.redis.commandsPerOrder),
            ratio((x) => x.redis.commandsPerOrder),
          ],
          [
            'Redis script calls per order',
            ...col((x) => x.redis.scriptsPerOrder),
            ratio((x) => x.redis.scriptsPerOrder),
          ],
          [
            'Redis CPU, ms per order',
            ...col((x) => x.redis.cpuMsPerOrder),
            ratio((x) => x.redis.cpuMsPerOrder),
          ],
          [
            'worker process CPU, ms per order',
            ...col((x) => cpu(x, 'workers')),
            ratio((x) => Number(cpu(x, 'workers'))),
          ],
          [
            'API process CPU, ms per order',
            ...col((x) => cpu(x, 'api')),
            ratio((x) => Number(cpu(x, 'api'))),
          ],
          [
            'PostgreSQL CPU, ms per order (all backends on the machine)',
            ...col((x) => cpu(x, 'postgres')),
            '-',
          ],
          [
            'machine cores busy during the flood',
            ...col((x) => `${x.monitor.machineCpuCores} of ${m.nproc}`),
            '-',
          ],
          [
            'of which this stack (API + worker + its Redis + bench) · PostgreSQL (every backend) · anything else',
            ...col((x) => {
              const ours = x.monitor.processes
                .filter((p) => p.label !== 'postgres')
                .reduce((sum, p) => sum + p.cpuCores, 0);
              const pg = x.monitor.processes.find((p) => p.label === 'postgres')?.cpuCores ?? 0;
              return `${ours.toFixed(2)} · ${pg.toFixed(2)} · ${Math.max(0, x.monitor.machineCpuCores - ours - pg).toFixed(2)}`;
            }),
            '-',
          ],
          [
            '1-min load average, start → end of the stack',
            ...col((x) => `${x.loadAverage.start.toFixed(2)} → ${x.loadAverage.end.toFixed(2)}`),
            '-',
          ],
          [
            'orders counted (verified)',
            ...col((x) => (x.verification.ok ? `${x.verification.accepted} ok` : 'FAILED')),
            '-',
          ],
        ],
      ),
      '',
    );
    if (fair && fifo) {
      const names = new Set([...fair.redis.top, ...fifo.redis.top].map((c) => c.command));
      const per = (x: NoisyResult, c: string) => x.redis.top.find((t) => t.command === c)?.perOrder ?? 0;
      out.push(
        'Redis commands per order by name (the largest; a Lua script counts once as `evalsha` and once per command it runs):',
        '',
        table(
          ['command', 'FAIRNESS=true', 'FAIRNESS=false', 'difference'],
          [...names]
            .sort((a, b) => per(fair, b) - per(fair, a))
            .map((c) => [c, per(fair, c), per(fifo, c), (per(fair, c) - per(fifo, c)).toFixed(3)]),
        ),
        '',
      );
    }
  }

  if (r.rounds.length > 2) {
    out.push(
      `Every round (${r.rounds.length} stacks, alternating which went first; the tables above show the first of each):`,
      '',
      table(
        [
          '#',
          'FAIRNESS',
          'decided during the flood, orders/s',
          ...STEADY.map((t) => `${t} p99 ms: quiet / flood / draining`),
          'Redis commands per order',
          'load average start → end',
        ],
        r.rounds.map((x, i) => [
          i + 1,
          String(x.fairness),
          x.totalPerS,
          ...STEADY.map((t) => {
            const p = x.p99[t];
            return p ? `${ms(p.quiet)} / ${ms(p.flood)} / ${ms(p.drain)}` : '-';
          }),
          x.redisCommandsPerOrder,
          `${x.loadAverage.start.toFixed(2)} → ${x.loadAverage.end.toFixed(2)}`,
        ]),
      ),
      '',
    );
  }

  if (weighted) {
    const w = weighted;
    out.push(
      `## Weighted: ${HEAVY} and ${LIGHT} each post ${w.floods[0]?.orders.toLocaleString('en')} orders at once (\`TENANTS=${w.tenants}\`)`,
      '',
      `The fair queue's backlog (\`FairQueue.backlog\`) sampled every 200 ms; the window is the span in which both tenants had commands waiting their turn (${w.window.source}), ${w.window.seconds} s. Completions = orders whose \`decided_at\` falls in it.`,
      '',
      table(
        ['', HEAVY, LIGHT, `${HEAVY} ÷ ${LIGHT}`],
        [
          ['accepted by the API, orders/s', ...w.floods.map((f) => f.acceptedPerS), '-'],
          ['decided in the window', w.completions[HEAVY] ?? 0, w.completions[LIGHT] ?? 0, w.ratio],
          ...(w.dispatched
            ? [
                [
                  'handed to the workers in the window (dispatcher counters)',
                  w.dispatched[HEAVY] ?? 0,
                  w.dispatched[LIGHT] ?? 0,
                  w.dispatchedRatio ?? '-',
                ],
              ]
            : []),
          [
            'orders counted (verified)',
            w.verification.ok ? `${w.verification.accepted} ok` : 'FAILED',
            '',
            '',
          ],
        ],
      ),
      '',
    );
  }

  out.push('## Targets (issue #21)', '');
  out.push(
    table(
      ['target', 'measured', 'result'],
      r.targets.map((t) => [
        t.name,
        t.measured,
        t.met === null ? 'not measured' : t.met ? '**met**' : '**not met**',
      ]),
    ),
    '',
  );
  out.push(
    '## How it was measured',
    '',
    '- Each stack is the real thing, started the way `npm run bench` starts it (bench/stack.ts): `api/main.ts` and `workers/main.ts` as processes, an isolated PostgreSQL schema, and here a private `redis-server` so that INFO commandstats and Redis CPU count this stack only. Every tenant is an API key of its own (`API_KEYS`), so the tenant is the key id.',
    "- The flood is `POST /v1/orders/batch` with 500 orders per request, 3 requests in flight, each leaving as soon as the previous one is answered. B and C post `POST /v1/orders` on an open-loop schedule; each request's customer id carries its slice and index, so its scheduled time is known exactly from the write model.",
    '- "During the flood" = B\'s and C\'s orders scheduled from A\'s first batch to A\'s last decided order, split into "A posting" (until A\'s last batch was answered) and "A\'s backlog draining"; "quiet" = those scheduled before A\'s first batch (the first second left out). FAIRNESS=false is the same scenario on a fresh stack in the same run: BullMQ\'s FIFO. With `--rounds n` the pairs alternate which goes first and the targets use the medians.',
    "- The split of accepted → decided uses the job hashes BullMQ keeps (`timestamp`, `processedOn`, and `delay` in the job's options: held or not), read from the completed set by a script after each phase.",
    "- Throughput: orders decided (any tenant) between A's first batch and A's last decision, per second — API ingest and the drain share the cores, as they would in production. Redis commands and CPU per order: INFO deltas from A's first batch to everything projected, divided by the orders decided in between; process CPU from /proc over the flood window.",
    "- Weighted: the fair queue's own per-tenant counters are read by the bench (read-only Lua) only to find the window; the ratio is counted from `decided_at` in PostgreSQL.",
    "- Every stack ends with the bench's reconciliation (bench/verify.ts): every accepted order in the write model exactly once, one order event per order, the read models agreeing, every event projected once, no dead letters.",
    '',
    '## What the others offer',
    '',
    table(
      ['', 'Conveyor (this)', 'BullMQ Pro groups', 'Temporal fairness keys', 'Hatchet GROUP_ROUND_ROBIN'],
      [
        [
          'order across tenants',
          'weighted round-robin (a weight-w tenant takes w in a row) into a shallow BullMQ wait list',
          'round-robin over groups',
          'weighted round-robin (stride "pass" numbers) within each priority level',
          'round-robin over concurrency-key values',
        ],
        [
          'weights',
          'yes, per API key or sub-tenant (`TENANTS`)',
          'no',
          'yes, per key (float, up to 1000 overrides per queue)',
          'no (limits may differ per key via CEL)',
        ],
        [
          'per-tenant concurrency across replicas',
          'yes (`max_in_flight`)',
          'yes (group concurrency)',
          'no (per-key RPS only)',
          'yes (`max_runs` per key)',
        ],
        [
          'per-tenant backlog quota',
          'yes: 429 + Retry-After, batches included',
          '`maxSize` (not for `addBulk`)',
          'no',
          'only cancel strategies',
        ],
        [
          'licence',
          'open source',
          'commercial (BullMQ Pro)',
          'open source server; paid in Temporal Cloud',
          'open source (MIT)',
        ],
      ],
    ),
    '',
    'Sources: [BullMQ Pro groups](https://docs.bullmq.io/bullmq-pro/groups) ([concurrency](https://docs.bullmq.io/bullmq-pro/groups/concurrency), [max group size](https://docs.bullmq.io/bullmq-pro/groups/max-group-size)); [Temporal task queue priority and fairness](https://docs.temporal.io/develop/task-queue-priority-fairness); [Hatchet concurrency](https://docs.hatchet.run/v1/concurrency). Open-source BullMQ has no per-tenant ordering: its `groupKey` limiter was removed in 3.0 in favour of Pro groups ([bullmq#1510](https://github.com/taskforcesh/bullmq/issues/1510)).',
    '',
  );
  return out.join('\n');
}

/** The run as one SVG: B/C latency and A's completions over time, fair and FIFO, and the weighted drain. */
export function renderFairnessChart(r: FairnessResults): string {
  const charts: string[] = [];
  for (const x of [r.fair, r.fifo]) {
    if (!x) continue;
    const floodAt = (x.at.floodFrom - x.at.quietFrom) / 1000;
    charts.push(
      lineChart({
        title: `FAIRNESS=${x.fairness}: B and C worst accepted → decided per second (ms); A decided/s (right); flood from ${floodAt.toFixed(0)} s`,
        xLabel: 'seconds since B and C started',
        yLabel: 'ms',
        yRightLabel: "A's orders decided/s",
        width: 980,
        series: [
          ...STEADY.map((t, k) => ({
            label: `${t} worst ms`,
            color: k === 0 ? '#2563eb' : '#16a34a',
            points: x.timeline
              .filter((p) => p.worstMs[t] !== undefined)
              .map((p) => [p.t, p.worstMs[t]!] as [number, number]),
          })),
          {
            label: `${NOISY} decided/s`,
            color: '#9ca3af',
            right: true,
            points: x.timeline.map((p) => [p.t, p.decided[NOISY] ?? 0] as [number, number]),
          },
        ],
      }),
    );
  }
  if (r.weighted) {
    const w = r.weighted;
    const from = (w.window.from - w.start) / 1000;
    const to = (w.window.to - w.start) / 1000;
    charts.push(
      lineChart({
        title: `Weights ${weightOf(w, HEAVY)}:${weightOf(w, LIGHT)}: orders decided/s; both backlogged ${from.toFixed(0)}–${to.toFixed(0)} s, ratio ${w.ratio}:1`,
        xLabel: 'seconds since both floods started',
        yLabel: 'orders decided/s',
        width: 980,
        series: [HEAVY, LIGHT].map((t, k) => ({
          label: t,
          color: k === 0 ? '#2563eb' : '#f59e0b',
          points: w.timeline.map((p) => [p.t, p.decided[t] ?? 0] as [number, number]),
        })),
      }),
    );
  }
  return stack(charts);
}
