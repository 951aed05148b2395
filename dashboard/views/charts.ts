import { html } from 'hono/html';
import type { Html } from './layout.ts';

/** One stacked layer of a bar chart. */
export interface Layer {
  label: string;
  /** A fill colour of our own palette (never request data). */
  color: string;
  values: readonly number[];
}

const W = 180;
const H = 36;

/**
 * A per-minute bar chart as inline SVG (no script, no request): one bar per minute, layers stacked,
 * oldest on the left. The accessible name says what a reader would otherwise have to count.
 */
export function minuteBars(layers: readonly Layer[], summary: string): Html {
  const n = Math.max(1, ...layers.map((l) => l.values.length));
  const totals = Array.from({ length: n }, (_, i) => layers.reduce((s, l) => s + (l.values[i] ?? 0), 0));
  const max = Math.max(1, ...totals);
  const step = W / n;
  const barWidth = Math.max(1, step - 0.6);
  const rects: Html[] = [];
  for (let i = 0; i < n; i++) {
    let y = H;
    for (const layer of layers) {
      const v = layer.values[i] ?? 0;
      if (v <= 0) continue;
      const h = Math.max(1, (v / max) * (H - 2));
      y -= h;
      rects.push(
        html`<rect
          x="${(i * step).toFixed(2)}"
          y="${y.toFixed(2)}"
          width="${barWidth.toFixed(2)}"
          height="${h.toFixed(2)}"
          fill="${layer.color}"
          ><title>
            ${n - 1 - i === 0 ? 'this minute' : `${n - 1 - i} min ago`}: ${v} ${layer.label}
          </title></rect
        >`,
      );
    }
  }
  return html`<svg
    class="spark"
    role="img"
    aria-label="${summary}"
    width="${W}"
    height="${H}"
    viewBox="0 0 ${W} ${H}"
    xmlns="http://www.w3.org/2000/svg"
  >
    <title>${summary}</title>
    <line x1="0" y1="${H - 0.5}" x2="${W}" y2="${H - 0.5}" stroke="#d4dbe2" stroke-width="1" />
    ${rects}
  </svg>`;
}

/** A colour key for a chart's layers. */
export function legend(layers: readonly Pick<Layer, 'label' | 'color'>[]): Html {
  return html`<span class="legend"
    >${layers.map((l) => html`<span><i style="background:${l.color}"></i>${l.label}</span>`)}</span
  >`;
}
