import { html } from 'hono/html';
import type { QueueTenantsView, TenantRow, TenantsOverview } from '../overview/tenants.ts';
import { formatDuration, timeTag, type Html } from './layout.ts';

/** How often the Tenants page reloads itself: the second view on has throughputs. */
export const TENANTS_REFRESH_SECONDS = 10;

const n = (v: number) => v.toLocaleString('en-US');
const wait = (s: number | null) => (s === null ? '—' : formatDuration(s));
/** Per second, to one decimal below 10 (a quiet tenant's 0.3/s is not 0). */
const rate = (r: number | null) =>
  r === null ? '—' : `${r < 10 ? (Math.round(r * 10) / 10).toLocaleString('en-US') : n(Math.round(r))}/s`;

function inFlightCell(t: TenantRow): Html {
  if (t.maxInFlight === 0) return html`<span class="muted" title="no in-flight limit: not tracked">—</span>`;
  return html`${n(t.inFlight)} / ${n(t.maxInFlight)}`;
}

function tenantRow(t: TenantRow): Html {
  return html`<tr data-tenant="${t.tenant}">
    <th scope="row"><code>${t.tenant}</code></th>
    <td class="num" data-testid="waiting">${n(t.waiting)}</td>
    <td class="num">${wait(t.oldestWaitSeconds)}</td>
    <td class="num" data-testid="in-flight">${inFlightCell(t)}</td>
    <td class="num">${n(t.weight)}</td>
    <td class="num">${rate(t.throughput)}</td>
    <td>
      ${
        t.blocked
          ? html`<span
              class="badge warn"
              data-testid="blocked"
              title="at its in-flight limit: its turn waits for a slot"
              >at limit</span
            >`
          : ''
      }
    </td>
  </tr>`;
}

function queueSection(q: QueueTenantsView, top: number): Html {
  const others = q.others;
  return html`<section data-testid="tenants-${q.queue}" data-queue="${q.queue}">
    <h2>
      ${q.module} <span class="muted small">queue <code>${q.queue}</code></span>
    </h2>
    <p class="muted small" data-testid="summary-${q.queue}">
      ${n(q.held)} command${q.held === 1 ? '' : 's'} waiting their turn across
      ${n(q.tenants.length + others.tenants)} tenant${q.tenants.length + others.tenants === 1 ? '' : 's'} ·
      backlog ${n(q.backlog)} (what KEDA scales on) ·
      ${
        q.measuredSeconds === null
          ? 'throughput from the next view on'
          : html`started ${rate(q.throughput)} over the last ${formatDuration(q.measuredSeconds)}`
      }
    </p>
    ${
      q.tenants.length === 0 && others.tenants === 0
        ? html`<p class="muted">No tenant has a command waiting for its turn.</p>`
        : html`<table class="tenants">
            <caption class="sr-only">
              Tenants of ${q.queue} with commands waiting, largest backlog first
            </caption>
            <thead>
              <tr>
                <th scope="col">Tenant</th>
                <th scope="col" class="num">Waiting</th>
                <th scope="col" class="num">Oldest wait</th>
                <th scope="col" class="num">In flight / limit</th>
                <th scope="col" class="num">Weight</th>
                <th scope="col" class="num">Throughput</th>
                <th scope="col">Blocked</th>
              </tr>
            </thead>
            <tbody>
              ${q.tenants.map(tenantRow)}
              ${
                others.tenants > 0
                  ? html`<tr data-tenant="(other)">
                      <th scope="row" class="muted">
                        ${n(others.tenants)} other tenant${others.tenants === 1 ? '' : 's'}
                        <span class="small">(past the largest ${top})</span>
                      </th>
                      <td class="num" data-testid="waiting">${n(others.waiting)}</td>
                      <td class="num">${wait(others.oldestWaitSeconds)}</td>
                      <td class="num muted">—</td>
                      <td class="num muted">—</td>
                      <td class="num">${rate(others.throughput)}</td>
                      <td></td>
                    </tr>`
                  : ''
              }
            </tbody>
          </table>`
    }
  </section>`;
}

/** The Tenants page: per command queue, who waits for a turn, how long, and how fast each is served. */
export function tenantsView(t: TenantsOverview): Html {
  return html`<h1>Tenants</h1>
    <p class="muted small">
      As of ${timeTag(t.at)} · refreshes every ${TENANTS_REFRESH_SECONDS} s · the ${t.top} largest backlogs
      per queue · throughput: commands handed to the workers per second between two views at least 5 s apart
    </p>
    ${
      t.enabled
        ? ''
        : html`<div class="notice info" data-testid="fairness-off">
            Fairness is off (<code>FAIRNESS=false</code>): commands run in arrival order and none waits for a
            turn. Commands held before it was turned off are still shown until they run.
          </div>`
    }
    ${t.queues.map((q) =>
      q.view.ok
        ? queueSection(q.view.value, t.top)
        : html`<section data-testid="tenants-${q.queue}">
            <h2>${q.module}</h2>
            <p class="notice error" data-testid="unavailable">unavailable: ${q.view.error}</p>
          </section>`,
    )}`;
}
