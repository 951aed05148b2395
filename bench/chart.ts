import type { BenchResults } from './targets.ts';

/**
 * The run as one SVG, drawn by hand (no chart library): throughput bars (Conveyor's scenarios next to
 * the baselines) and latency bars (p50 / p95 / p99 overlaid, log scale) of the API and end to end.
 */

interface Bar {
  value: number;
  color: string;
  legend: string;
}

interface Row {
  label: string;
  bars: Bar[];
}

interface Panel {
  title: string;
  unit: string;
  scale: 'linear' | 'log';
  rows: Row[];
}

const WIDTH = 980;
const LABEL_W = 320;
const PLOT_W = WIDTH - LABEL_W - 90;
const ROW_H = 22;
const COLORS = {
  conveyor: '#2563eb',
  conveyorLight: '#93c5fd',
  ceiling: '#374151',
  baseline: '#9ca3af',
  p50: '#1e3a8a',
  p95: '#3b82f6',
  p99: '#bfdbfe',
};

const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
const fmt = (n: number) =>
  Number.isInteger(n) || n >= 100 ? String(Math.round(n)) : n >= 10 ? n.toFixed(1) : n.toFixed(2);

function panel(p: Panel, top: number): { svg: string; height: number } {
  const values = p.rows.flatMap((r) => r.bars.map((b) => b.value)).filter((v) => v > 0);
  const max = Math.max(1, ...values);
  const minLog = Math.floor(Math.log10(Math.max(0.1, Math.min(...values, max))));
  const maxLog = Math.ceil(Math.log10(max));
  const x = (v: number) =>
    p.scale === 'linear'
      ? (v / max) * PLOT_W
      : ((Math.log10(Math.max(v, 10 ** minLog)) - minLog) / Math.max(1, maxLog - minLog)) * PLOT_W;
  const out: string[] = [`<text x="10" y="${top + 18}" class="title">${esc(p.title)}</text>`];
  const plotTop = top + 30;
  // Linear ticks on a 1-2-5 step so the axis reads 0, 500, 1000 rather than 0, 138, 276.
  const raw = max / 6;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * mag).find((s) => s >= raw) ?? raw;
  const ticks =
    p.scale === 'log'
      ? Array.from({ length: maxLog - minLog + 1 }, (_, i) => 10 ** (minLog + i))
      : Array.from({ length: Math.floor(max / step) + 1 }, (_, i) => i * step);
  const plotH = p.rows.length * ROW_H;
  for (const t of ticks) {
    const tx = LABEL_W + x(t);
    out.push(`<line x1="${tx}" y1="${plotTop}" x2="${tx}" y2="${plotTop + plotH}" class="grid"/>`);
    out.push(`<text x="${tx}" y="${plotTop + plotH + 14}" class="tick">${fmt(t)}</text>`);
  }
  out.push(
    `<text x="${LABEL_W + PLOT_W}" y="${plotTop + plotH + 28}" class="tick" text-anchor="end">${esc(p.unit)}</text>`,
  );
  p.rows.forEach((row, i) => {
    const y = plotTop + i * ROW_H;
    out.push(`<text x="${LABEL_W - 8}" y="${y + 15}" class="label">${esc(row.label)}</text>`);
    // Largest first so smaller percentiles draw on top of larger ones.
    const sorted = [...row.bars].sort((a, b) => b.value - a.value);
    for (const b of sorted) {
      out.push(
        `<rect x="${LABEL_W}" y="${y + 3}" width="${Math.max(1, x(b.value)).toFixed(1)}" height="${ROW_H - 6}" fill="${b.color}"><title>${esc(`${b.legend}: ${fmt(b.value)} ${p.unit}`)}</title></rect>`,
      );
    }
    // Values in the order the bars were given (p50 / p95 / p99 for latencies).
    const label = row.bars.map((b) => fmt(b.value)).join(' / ');
    out.push(
      `<text x="${LABEL_W + x(Math.max(...row.bars.map((b) => b.value))) + 6}" y="${y + 15}" class="value">${label}</text>`,
    );
  });
  return { svg: out.join('\n'), height: 30 + plotH + 40 };
}

function throughputPanel(r: BenchResults): Panel {
  const rows: Row[] = [];
  for (const s of r.scenarios.filter((x) => x.status === 'ok')) {
    if (s.drain)
      rows.push({
        label: `Conveyor ${s.name} · backlog drain`,
        bars: [{ value: s.drain.perS, color: COLORS.conveyor, legend: 'orders/s' }],
      });
    if (s.saturation) {
      rows.push({
        label: `Conveyor ${s.name} · HTTP e2e`,
        bars: [{ value: s.saturation.timing.e2ePerS, color: COLORS.conveyorLight, legend: 'orders/s' }],
      });
    }
  }
  const names = {
    ceiling: 'Raw ceiling (no-op BullMQ)',
    naive: 'Naive BullMQ + 1 tx/job',
    peer: 'graphile-worker 0.17 (naive work)',
  };
  for (const b of r.baselines) {
    rows.push({
      label: names[b.name],
      bars: [
        { value: b.perS, color: b.name === 'ceiling' ? COLORS.ceiling : COLORS.baseline, legend: 'orders/s' },
      ],
    });
  }
  return {
    title: 'Throughput: orders per second, order accepted → read model projected',
    unit: 'orders/s',
    scale: 'linear',
    rows,
  };
}

function latencyPanel(r: BenchResults): Panel {
  const pct = (l: { p50: number; p95: number; p99: number }): Bar[] => [
    { value: l.p50, color: COLORS.p50, legend: 'p50' },
    { value: l.p95, color: COLORS.p95, legend: 'p95' },
    { value: l.p99, color: COLORS.p99, legend: 'p99' },
  ];
  const rows: Row[] = [];
  for (const { load } of r.api?.rates ?? []) {
    rows.push({
      label: `API enqueue @ ${load.offeredPerS ?? 'saturation'}${load.offeredPerS ? ' req/s' : ''}`,
      bars: pct(load.latencyMs),
    });
  }
  for (const s of r.scenarios.filter((x) => x.status === 'ok' && x.fixedRate)) {
    rows.push({
      label: `e2e ${s.name} @ ${s.fixedRate!.load.offeredPerS} req/s`,
      bars: pct(s.fixedRate!.timing.projectedMs),
    });
  }
  return {
    title: 'Latency p50 / p95 / p99 (dark → light, log scale): API enqueue; end to end accepted → projected',
    unit: 'ms',
    scale: 'log',
    rows,
  };
}

/** @returns a standalone SVG document. */
export function renderChart(r: BenchResults): string {
  const parts: string[] = [];
  let top = 40;
  for (const p of [throughputPanel(r), latencyPanel(r)]) {
    if (p.rows.length === 0) continue;
    const { svg, height } = panel(p, top);
    parts.push(svg);
    top += height + 10;
  }
  const m = r.machine;
  const header = `Conveyor benchmark ${r.startedAt} · ${m.nproc} × ${m.cpuModel} · Node ${m.node} · Redis ${m.redis} · PostgreSQL ${m.postgres}`;
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${WIDTH}" height="${top + 10}" viewBox="0 0 ${WIDTH} ${top + 10}" font-family="system-ui, sans-serif">
<style>
  .title { font-size: 14px; font-weight: 600; fill: #111827; }
  .label { font-size: 12px; fill: #111827; text-anchor: end; }
  .value { font-size: 11px; fill: #374151; }
  .tick { font-size: 10px; fill: #6b7280; text-anchor: middle; }
  .grid { stroke: #e5e7eb; stroke-width: 1; }
  .head { font-size: 11px; fill: #6b7280; }
</style>
<rect width="100%" height="100%" fill="#ffffff"/>
<text x="10" y="20" class="head">${esc(header)}</text>
${parts.join('\n')}
</svg>
`;
}
