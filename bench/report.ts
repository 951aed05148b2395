import type { MonitorWindow } from './monitor.ts';
import type { BenchResults } from './targets.ts';

/**
 * `bench/results/latest.md`: the tables the README's Performance section shows, generated from one
 * results file so the numbers in prose and in JSON can never disagree.
 */

const row = (cells: readonly (string | number)[]) => `| ${cells.join(' | ')} |`;
const table = (head: readonly string[], rows: readonly (readonly (string | number)[])[]) =>
  [row(head), row(head.map(() => '---')), ...rows.map(row)].join('\n');

/** Peak RSS per process over several windows, e.g. "152 + 148" for two workers. */
function peak(
  windows: MonitorWindow | readonly (MonitorWindow | undefined)[] | undefined,
  prefix: string,
): string {
  const list = Array.isArray(windows) ? windows : [windows];
  const byLabel = new Map<string, number>();
  for (const w of list) {
    for (const p of (w as MonitorWindow | undefined)?.processes ?? []) {
      if (p.label.startsWith(prefix)) byLabel.set(p.label, Math.max(byLabel.get(p.label) ?? 0, p.peakRssMb));
    }
  }
  return byLabel.size ? [...byLabel.values()].map((v) => String(Math.round(v))).join(' + ') : '-';
}

/** Where the machine's CPU went in a window, busiest first: "workers-1 0.62 · postgres 0.55 · …". */
function cpuSplit(window: MonitorWindow | undefined): string {
  if (!window) return '-';
  const parts = window.processes
    .filter((p) => p.cpuCores >= 0.05)
    .sort((a, b) => b.cpuCores - a.cpuCores)
    .map((p) => `${p.label} ${p.cpuCores.toFixed(2)}`);
  return `${parts.join(' · ')} (machine ${window.machineCpuCores})`;
}

const met = (m: boolean | null) => (m === null ? 'not measured' : m ? '**met**' : '**not met**');

export function renderMarkdown(r: BenchResults, chartFile: string): string {
  const m = r.machine;
  const o = r.options;
  const out: string[] = [];
  out.push(`# Conveyor benchmark — ${r.startedAt}`, '');
  out.push(
    `Machine: ${m.nproc} × ${m.cpuModel}, ${m.memoryGb} GB RAM, ${m.kernel}; Node ${m.node}, Redis ${m.redis} (${m.redisPersistence}), PostgreSQL ${m.postgres} (${m.postgresDurability}). ` +
      `Load average at start: ${m.loadAverageAtStart}. Load generator (autocannon), Redis, PostgreSQL, brokers and the platform share the machine.`,
    '',
  );
  out.push(
    `Run: \`${r.command}\` — ${o.durationS} s per HTTP phase, ${o.connections} connections per API, ` +
      `orders of ${o.orderSize} items, drains of ${o.backlog} orders, baselines of ${o.baselineJobs} jobs; wall time ${r.wallS} s. ` +
      `Every run verified by counting: ${r.verified ? '**nothing lost, nothing duplicated**' : '**VERIFICATION FAILED**'}.`,
    '',
    `![throughput and latency](${chartFile})`,
    '',
  );

  out.push('## End to end (POST → write model → outbox → bus → read model)', '');
  out.push(
    table(
      [
        'scenario',
        'backlog drain, orders/s',
        'HTTP saturation: accepted/s → projected/s',
        `e2e latency @ ${o.e2eRatePerS} req/s, p50 / p95 / p99 ms`,
        'peak RSS MB: API / workers',
        'CPU cores during the drain',
        'verified',
      ],
      r.scenarios.map((s) => {
        const windows = [s.drain?.monitor, s.fixedRate?.monitor, s.saturation?.monitor];
        return s.status !== 'ok'
          ? [
              s.name,
              `${s.status}: ${(s.error ?? '').split('\n')[0]!.slice(0, 120)}`,
              '-',
              '-',
              '-',
              '-',
              s.verification?.ok ? 'yes' : 'no',
            ]
          : [
              s.name,
              s.drain?.perS ?? '-',
              s.saturation ? `${s.saturation.load.acceptedPerS} → ${s.saturation.timing.e2ePerS}` : '-',
              s.fixedRate
                ? `${s.fixedRate.timing.projectedMs.p50} / ${s.fixedRate.timing.projectedMs.p95} / ${s.fixedRate.timing.projectedMs.p99}`
                : '-',
              `${peak(windows, 'api')} / ${peak(windows, 'workers')}`,
              cpuSplit(s.drain?.monitor),
              s.verification?.ok ? `yes (${s.verification.accepted})` : 'NO',
            ];
      }),
    ),
    '',
  );

  const bus = r.scenarios[0]?.bus;
  const scaling = r.scenarios.filter((s) => s.bus === bus && s.status === 'ok' && s.drain);
  const unit = scaling.find((s) => s.workers === 1 && s.apiReplicas === 1);
  if (scaling.length > 1 && unit?.drain && unit.saturation) {
    out.push(`## Horizontal scaling (${bus} bus, same machine)`, '');
    out.push(
      table(
        [
          'worker processes / API replicas',
          'drain orders/s',
          '× 1/1',
          'HTTP e2e orders/s',
          '× 1/1',
          'machine cores busy during drain',
        ],
        scaling.map((s) => [
          `${s.workers} / ${s.apiReplicas}`,
          s.drain!.perS,
          (s.drain!.perS / unit.drain!.perS).toFixed(2),
          s.saturation?.timing.e2ePerS ?? '-',
          s.saturation
            ? (s.saturation.timing.e2ePerS / Math.max(1, unit.saturation!.timing.e2ePerS)).toFixed(2)
            : '-',
          `${s.drain!.monitor.machineCpuCores} of ${m.nproc}`,
        ]),
      ),
      '',
    );
  }

  if (r.api) {
    out.push('## API enqueue (one API process, no workers running)', '');
    out.push(
      table(
        [
          'offered',
          'accepted/s',
          'p50 ms',
          'p95 ms',
          'p99 ms',
          'max ms',
          'errors',
          'API peak RSS MB',
          'CPU cores (bench = load generator)',
        ],
        r.api.rates.map(({ load: l, monitor: w }) => [
          l.offeredPerS ? `${l.offeredPerS} req/s` : `saturation (${l.connections} conn.)`,
          l.acceptedPerS,
          l.latencyMs.p50,
          l.latencyMs.p95,
          l.latencyMs.p99,
          l.latencyMs.max,
          l.errors + l.non2xx,
          peak(w, 'api'),
          cpuSplit(w),
        ]),
      ),
      '',
    );
    const d = r.api.backlogDrain;
    out.push(
      `Backlog left by the API phase (${d.orders} orders) drained by one worker process at **${d.perS} orders/s**, ` +
        `worker peak RSS ${peak(d.monitor, 'workers')} MB; CPU: ${cpuSplit(d.monitor)}.`,
      '',
    );
  }

  if (r.baselines.length > 0) {
    out.push('## Baselines (same Redis, same PostgreSQL, same run)', '');
    const ref = r.scenarios.find((s) => s.bus === 'bullmq' && s.drain);
    out.push(
      table(
        ['pipeline', 'orders/s', 'Conveyor (BullMQ bus) ÷ it', 'settings'],
        r.baselines.map((b) => [
          b.description,
          b.perS,
          ref?.drain ? `${(ref.drain.perS / b.perS).toFixed(2)}×` : '-',
          Object.entries(b.settings)
            .map(([k, v]) => `${k}=${JSON.stringify(v)}`)
            .join(', '),
        ]),
      ),
      '',
    );
  }

  out.push('## Targets', '');
  out.push(
    table(
      ['target', 'measured', 'result', 'evidence'],
      r.targets.map((t) => [t.name, t.measured, met(t.met), t.context || '-']),
    ),
    '',
  );

  for (const p of r.profiles) {
    out.push(`### CPU profile ${p.file} (${p.busyMs} ms busy)`, '');
    out.push(
      table(
        ['area', 'self %'],
        p.areas.slice(0, 8).map((a) => [a.area, a.percent]),
      ),
      '',
    );
    out.push(
      table(
        ['function', 'where', 'self %'],
        p.functions.slice(0, 10).map((f) => [f.name, f.where, f.percent]),
      ),
      '',
    );
  }
  out.push(
    '## How to read this',
    '',
    '- Throughput is end to end: an order counts once its read-model row is committed. A backlog drain enqueues orders through `POST /v1/orders/batch` with the queue paused, resumes it and times until the last projection — the same method as the baselines (addBulk, then drain).',
    '- End-to-end latency is `projection_inbox.processed_at − orders.accepted_at` from PostgreSQL (accepted by the API → projection transaction).',
    "- autocannon's `overallRate` is a per-connection quota per second: requests leave in bursts at each second's start, so fixed-rate latencies include that queueing.",
    '- The raw ceiling is one BullMQ hop that does nothing. Conveyor on the BullMQ bus pays that hop per order (the `orders` command queue), plus one `events` job per batch of up to 100 events, and three PostgreSQL transactions per batch (orders + outbox in one statement, relay claim + mark, projection + inbox), on the same cores as Redis and PostgreSQL.',
    '- Everything runs on the same machine: the load generator and the databases take CPU from the platform, which is why scaling out processes on few cores buys little.',
    '',
  );
  return out.join('\n');
}
