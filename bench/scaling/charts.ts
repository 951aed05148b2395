/**
 * The scaling results as SVG, drawn by hand like bench/chart.ts: throughput against replicas beside
 * perfect linear scaling, and the autoscaler replay's timeline (backlog, replicas, orders/s).
 */

const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
const STYLE = `<style>text{font:12px sans-serif;fill:#111827}.title{font-weight:bold;font-size:14px}.axis{stroke:#9ca3af}.grid{stroke:#e5e7eb}</style>`;

interface Series {
  label: string;
  color: string;
  points: [number, number][];
  dashed?: boolean;
  /** Plotted on the right-hand axis. */
  right?: boolean;
}

interface LineChart {
  title: string;
  xLabel: string;
  yLabel: string;
  yRightLabel?: string;
  series: Series[];
  width?: number;
  height?: number;
}

function niceMax(v: number): number {
  if (v <= 0) return 1;
  const mag = 10 ** Math.floor(Math.log10(v));
  return ([1, 2, 2.5, 5, 10].map((m) => m * mag).find((m) => m >= v) ?? v) as number;
}

/** A line chart with an optional right-hand axis. */
export function lineChart(c: LineChart): string {
  const W = c.width ?? 760;
  const H = c.height ?? 320;
  const m = { l: 70, r: c.yRightLabel ? 70 : 20, t: 40, b: 70 };
  const pw = W - m.l - m.r;
  const ph = H - m.t - m.b;
  const all = c.series.flatMap((s) => s.points);
  const xMax = Math.max(...all.map((p) => p[0]));
  const xMin = Math.min(...all.map((p) => p[0]));
  const yMax = niceMax(
    Math.max(...c.series.filter((s) => !s.right).flatMap((s) => s.points.map((p) => p[1]))),
  );
  const rightPts = c.series.filter((s) => s.right).flatMap((s) => s.points.map((p) => p[1]));
  const yrMax = niceMax(Math.max(1, ...rightPts));
  const x = (v: number) => m.l + ((v - xMin) / Math.max(1e-9, xMax - xMin)) * pw;
  const y = (v: number, right = false) => m.t + ph - (v / (right ? yrMax : yMax)) * ph;
  const out = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}">${STYLE}`,
    `<rect width="${W}" height="${H}" fill="white"/>`,
    `<text x="${m.l}" y="22" class="title">${esc(c.title)}</text>`,
  ];
  for (let i = 0; i <= 5; i++) {
    const v = (yMax / 5) * i;
    out.push(`<line class="grid" x1="${m.l}" x2="${m.l + pw}" y1="${y(v)}" y2="${y(v)}"/>`);
    out.push(`<text x="${m.l - 6}" y="${y(v) + 4}" text-anchor="end">${Math.round(v)}</text>`);
    if (c.yRightLabel) {
      const vr = (yrMax / 5) * i;
      out.push(
        `<text x="${m.l + pw + 6}" y="${y(vr, true) + 4}">${Number.isInteger(vr) ? vr : vr.toFixed(1)}</text>`,
      );
    }
  }
  const xTicks =
    xMax - xMin <= 10
      ? Array.from({ length: xMax - xMin + 1 }, (_, i) => xMin + i)
      : [0, 1, 2, 3, 4, 5].map((i) => xMin + ((xMax - xMin) / 5) * i);
  for (const v of xTicks) {
    out.push(`<text x="${x(v)}" y="${m.t + ph + 16}" text-anchor="middle">${Math.round(v)}</text>`);
  }
  out.push(`<line class="axis" x1="${m.l}" x2="${m.l}" y1="${m.t}" y2="${m.t + ph}"/>`);
  out.push(`<line class="axis" x1="${m.l}" x2="${m.l + pw}" y1="${m.t + ph}" y2="${m.t + ph}"/>`);
  out.push(`<text x="${m.l + pw / 2}" y="${m.t + ph + 34}" text-anchor="middle">${esc(c.xLabel)}</text>`);
  out.push(
    `<text transform="translate(16 ${m.t + ph / 2}) rotate(-90)" text-anchor="middle">${esc(c.yLabel)}</text>`,
  );
  if (c.yRightLabel) {
    out.push(
      `<text transform="translate(${W - 14} ${m.t + ph / 2}) rotate(90)" text-anchor="middle">${esc(c.yRightLabel)}</text>`,
    );
  }
  c.series.forEach((s, i) => {
    const d = s.points
      .map((p, k) => `${k === 0 ? 'M' : 'L'}${x(p[0]).toFixed(1)},${y(p[1], s.right).toFixed(1)}`)
      .join(' ');
    out.push(
      `<path d="${d}" fill="none" stroke="${s.color}" stroke-width="2"${s.dashed ? ' stroke-dasharray="6 4"' : ''}/>`,
    );
    if (s.points.length <= 12) {
      for (const p of s.points)
        out.push(`<circle cx="${x(p[0])}" cy="${y(p[1], s.right)}" r="3" fill="${s.color}"/>`);
    }
    const lx = m.l + i * 190;
    out.push(
      `<line x1="${lx}" x2="${lx + 20}" y1="${H - 14}" y2="${H - 14}" stroke="${s.color}" stroke-width="2"${s.dashed ? ' stroke-dasharray="6 4"' : ''}/>`,
    );
    out.push(`<text x="${lx + 26}" y="${H - 10}">${esc(s.label)}</text>`);
  });
  out.push('</svg>');
  return out.join('\n');
}

/** Charts one above the other in one SVG (each keeps its own size). */
export function stack(svgs: readonly string[]): string {
  let y = 0;
  let width = 0;
  const parts = svgs.map((svg) => {
    const w = Number(/width="(\d+)"/.exec(svg)?.[1] ?? 0);
    const h = Number(/height="(\d+)"/.exec(svg)?.[1] ?? 0);
    const part = svg.replace('<svg ', `<svg y="${y}" `);
    y += h;
    width = Math.max(width, w);
    return part;
  });
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${y}" viewBox="0 0 ${width} ${y}">\n${parts.join('\n')}\n</svg>`;
}

/** A trailing moving average over `windowS` seconds of (t, value) points. */
export function smooth(points: readonly [number, number][], windowS: number): [number, number][] {
  return points.map(([t], i) => {
    const inWindow = points.slice(0, i + 1).filter(([u]) => u > t - windowS);
    return [t, Math.round(inWindow.reduce((s, [, v]) => s + v, 0) / inWindow.length)];
  });
}
