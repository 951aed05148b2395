import { html } from 'hono/html';
import { BASE_PATH, BOARD_PATH } from '../context.ts';
import type { CustomerOrder } from '../orders/story.sql.ts';
import type { OrderStory } from '../orders/story.ts';
import { outcomeView } from './dead-letters.ts';
import { timeTag, type Html } from './layout.ts';

const STYLE = html`<style>
  ol.timeline {
    list-style: none;
    margin: 0;
    padding: 0 0 0 4px;
  }
  ol.timeline li {
    position: relative;
    padding: 0 0 14px 26px;
    border-left: 2px solid var(--line);
    margin-left: 6px;
  }
  ol.timeline li:last-child {
    border-left-color: transparent;
  }
  ol.timeline li::before {
    content: '';
    position: absolute;
    left: -8px;
    top: 3px;
    width: 12px;
    height: 12px;
    border-radius: 50%;
    background: #94a3b8;
    border: 2px solid #fff;
    box-shadow: 0 0 0 1px #cbd5e1;
  }
  ol.timeline li.ok::before {
    background: #16a34a;
  }
  ol.timeline li.bad::before {
    background: #dc2626;
  }
  ol.timeline li.warn::before {
    background: #d97706;
  }
  ol.timeline li.info::before {
    background: #2563eb;
  }
  ol.timeline .when {
    font-size: 12px;
    color: var(--muted);
    font-variant-numeric: tabular-nums;
  }
  ol.timeline .what {
    font-weight: 600;
  }
  ol.timeline .detail {
    color: #39424b;
    overflow-wrap: anywhere;
  }
  .two {
    display: grid;
    gap: 16px;
    grid-template-columns: minmax(320px, 1fr) minmax(320px, 1.3fr);
    align-items: start;
  }
  @media (max-width: 900px) {
    .two {
      grid-template-columns: 1fr;
    }
  }
</style>`;

/** Money in minor units, with the currency's own number of decimals. */
export function formatMoney(cents: number | null | undefined, currency: string | null | undefined): string {
  if (cents === null || cents === undefined || !currency) return '—';
  try {
    const f = new Intl.NumberFormat('en-US', { style: 'currency', currency });
    const digits = f.resolvedOptions().maximumFractionDigits ?? 2;
    return f.format(cents / 10 ** digits);
  } catch {
    return `${cents} (minor units) ${currency}`;
  }
}

export const orderHref = (id: string): string => `${BASE_PATH}/orders/${encodeURIComponent(id)}`;

/** The lookup form; `q` is echoed as the input's value (escaped), never as markup. */
export function lookupForm(q = '', error?: string): Html {
  return html`<form class="filters" method="get" action="${BASE_PATH}/orders" role="search">
      <label
        >Order id or customer id
        <input name="q" value="${q}" size="44" required autocomplete="off" spellcheck="false" autofocus />
      </label>
      <button type="submit">Look up</button>
    </form>
    ${error ? html`<div class="notice error" role="alert" data-testid="lookup-error">${error}</div>` : ''}`;
}

/** The Orders page before a lookup. */
export function ordersHomeView(q?: string, error?: string): Html {
  return html`<h1>Orders</h1>
    ${lookupForm(q, error)}
    <p class="muted">
      An order id shows its whole story: when it was accepted, its job's attempts and errors, the decision,
      the events published and projected, its dead letters and what operators did with them. A customer id
      lists that customer's most recent orders.
    </p>`;
}

/** A customer's most recent orders (read model). */
export function customerOrdersView(
  customerId: string,
  orders: readonly CustomerOrder[],
  limit: number,
): Html {
  return html`<h1>Orders of customer <code>${customerId}</code></h1>
    ${lookupForm(customerId)}
    ${
      orders.length === 0
        ? html`<p class="muted" data-testid="empty">
            No order of this customer in the read model (orders appear here once projected).
          </p>`
        : html`<table data-testid="customer-orders">
              <thead>
                <tr>
                  <th scope="col">Accepted</th>
                  <th scope="col">Order</th>
                  <th scope="col">Status</th>
                  <th scope="col" class="num">Total</th>
                  <th scope="col">Last change</th>
                </tr>
              </thead>
              <tbody>
                ${orders.map(
                  (o) =>
                    html`<tr data-order="${o.orderId}">
                      <td>${timeTag(o.acceptedAt)}</td>
                      <td>
                        <a href="${orderHref(o.orderId)}"><code>${o.orderId}</code></a>
                      </td>
                      <td><span class="badge ${o.status}">${o.status}</span></td>
                      <td class="num">${formatMoney(o.totalCents, o.currency)}</td>
                      <td>${timeTag(o.updatedAt)}</td>
                    </tr>`,
                )}
              </tbody>
            </table>
            <p class="muted small">The ${limit} most recent, from the read model.</p>`
    }`;
}

function statusOf(s: OrderStory): string {
  if (s.view) return s.view.status;
  if (s.order) return s.order.status;
  if (s.job) return s.job.state === 'active' ? 'processing' : 'queued';
  return 'unknown';
}

function summary(s: OrderStory): Html {
  const items = s.order?.items;
  const itemCount = Array.isArray(items) ? items.length : null;
  return html`<dl data-testid="summary">
    <dt>Status</dt>
    <dd><span class="badge ${statusOf(s)}" data-testid="order-status">${statusOf(s)}</span></dd>
    <dt>Customer</dt>
    <dd>
      ${
        s.customerId
          ? html`<a href="${BASE_PATH}/orders?q=${encodeURIComponent(s.customerId)}">${s.customerId}</a>`
          : '—'
      }
    </dd>
    <dt>Total</dt>
    <dd>
      ${formatMoney(s.order?.totalCents, s.order?.currency)}${
        itemCount !== null
          ? html` <span class="muted">(${itemCount} line${itemCount === 1 ? '' : 's'})</span>`
          : ''
      }
    </dd>
    <dt>Accepted</dt>
    <dd data-testid="accepted-at">${timeTag(s.acceptedAt)}</dd>
    <dt>Accepted by</dt>
    <dd data-testid="accepted-by">
      ${
        s.acceptedBy
          ? html`API key <code>${s.acceptedBy}</code>`
          : html`<span class="muted">a producer enqueueing directly</span>`
      }
    </dd>
    <dt>Tenant</dt>
    <dd data-testid="tenant">
      ${
        s.tenant
          ? html`<code>${s.tenant}</code>${
                s.acceptedBy && s.tenant.startsWith(`${s.acceptedBy}/`)
                  ? html` <span class="muted">(a sub-tenant of key ${s.acceptedBy})</span>`
                  : ''
              }`
          : html`<span class="muted">not recorded (its job named none)</span>`
      }
    </dd>
    <dt>Correlation id</dt>
    <dd data-testid="correlation-id"><code>${s.correlationId ?? '—'}</code></dd>
    <dt>Decision</dt>
    <dd>
      ${
        s.order
          ? html`${s.order.status} at ${timeTag(s.order.decidedAt)} after ${s.order.attempts}
            attempt${s.order.attempts === 1 ? '' : 's'}${
              s.order.reason ? html` — <span class="wrap">${s.order.reason}</span>` : ''
            }`
          : html`<span class="muted">not decided yet</span>`
      }
    </dd>
    <dt>Read model</dt>
    <dd>
      ${
        s.view
          ? html`order_view says ${s.view.status}, updated ${timeTag(s.view.updatedAt)}`
          : html`<span class="muted">not projected yet</span>`
      }
    </dd>
  </dl>`;
}

function timelineView(s: OrderStory): Html {
  return html`<ol class="timeline" data-testid="timeline">
    ${s.timeline.map(
      (m) =>
        html`<li class="${m.tone}" data-kind="${m.kind}">
          <div class="when">${timeTag(m.at, true)}</div>
          <div class="what">${m.href ? html`<a href="${m.href}">${m.title}</a>` : m.title}</div>
          ${m.detail ? html`<div class="detail">${m.detail}</div>` : ''}
        </li>`,
    )}
  </ol>`;
}

function jobView(s: OrderStory): Html {
  const job = s.job;
  if (!job)
    return html`<p class="muted" data-testid="job">
      Its job is no longer in Redis (completed jobs are kept for ORDERS_KEEP_COMPLETED_SECONDS, failed ones
      while among the last 1,000); the write model, outbox and dead letters above tell the rest.
    </p>`;
  return html`<dl data-testid="job">
    <dt>Queue</dt>
    <dd>
      <a href="${BOARD_PATH}/queue/${encodeURIComponent(job.queue)}">${job.queue}</a> · job
      <code>${job.id}</code>
    </dd>
    <dt>State</dt>
    <dd><span class="badge">${job.state}</span></dd>
    <dt>Attempts</dt>
    <dd data-testid="job-attempts">
      ${job.attemptsMade} made of ${job.attempts}
      allowed${job.snoozes > 0 ? `; snoozed ${job.snoozes}× (no attempt used)` : ''}
    </dd>
    <dt>Enqueued</dt>
    <dd>${timeTag(job.enqueuedAt)}</dd>
    <dt>Last processed</dt>
    <dd>${timeTag(job.processedAt)}</dd>
    <dt>Finished</dt>
    <dd>${timeTag(job.finishedAt)}</dd>
    <dt>Errors</dt>
    <dd>
      ${
        job.errors.length === 0
          ? html`<span class="muted">none</span>`
          : html`<ol data-testid="job-errors">
              ${job.errors.map((e) => html`<li class="wrap">${e}</li>`)}
            </ol>`
      }
    </dd>
  </dl>`;
}

function eventsView(s: OrderStory): Html {
  if (s.events.length === 0) return html`<p class="muted">No event in the outbox (none yet, or pruned).</p>`;
  return html`<table data-testid="events">
    <thead>
      <tr>
        <th scope="col">Event</th>
        <th scope="col">Appended</th>
        <th scope="col">Published</th>
        <th scope="col">Projected</th>
      </tr>
    </thead>
    <tbody>
      ${s.events.map(
        (e) =>
          html`<tr>
            <td><strong>${e.type}</strong><br /><code class="small">${e.eventId}</code></td>
            <td>${timeTag(e.createdAt)}</td>
            <td>${e.publishedAt ? timeTag(e.publishedAt) : html`<span class="badge warn">pending</span>`}</td>
            <td>
              ${
                e.projected.length === 0
                  ? html`<span class="muted">not yet</span>`
                  : e.projected.map((p) => html`<div>${p.consumer} at ${timeTag(p.processedAt)}</div>`)
              }
            </td>
          </tr>`,
      )}
    </tbody>
  </table>`;
}

function deadLettersView(s: OrderStory): Html {
  if (s.deadLetters.length === 0) return html`<p class="muted">None.</p>`;
  return html`<table data-testid="order-dead-letters">
    <thead>
      <tr>
        <th scope="col">Dead letter</th>
        <th scope="col">Status</th>
        <th scope="col">Error</th>
        <th scope="col">Outcome of last redrive</th>
      </tr>
    </thead>
    <tbody>
      ${s.deadLetters.map(
        (d) =>
          html`<tr>
            <td>
              <a href="${BASE_PATH}/dead-letters/${encodeURIComponent(d.id)}"><code>${d.id}</code></a
              ><br /><span class="small muted"
                >${d.transport} ${d.origin} · ${d.attempts} attempts · redriven ${d.redriveCount}×</span
              >
            </td>
            <td><span class="badge ${d.status}">${d.status}</span></td>
            <td class="wrap">${d.error}</td>
            <td>${outcomeView(d.outcome)}</td>
          </tr>`,
      )}
    </tbody>
  </table>`;
}

/** An order's whole story on one page. */
export function orderStoryView(s: OrderStory): Html {
  return html`${STYLE}
    <p><a href="${BASE_PATH}/orders">← Orders</a></p>
    <h1>Order <code data-testid="order-id">${s.orderId}</code></h1>
    <div class="two">
      <div>
        ${summary(s)}
        <h2>Command job</h2>
        ${jobView(s)}
      </div>
      <section aria-labelledby="tl">
        <h2 id="tl" style="margin-top:0">Timeline</h2>
        ${timelineView(s)}
      </section>
    </div>
    <h2>Events</h2>
    ${eventsView(s)}
    <h2>Dead letters</h2>
    ${deadLettersView(s)}
    <p class="muted small">
      From the write model, outbox, projection inbox, read model, dead-letter table and audit log
      (PostgreSQL), and the command's job while Redis keeps it.
    </p>`;
}

/** No system knows the id. */
export function unknownOrderView(orderId: string): Html {
  return html`<h1>No order <code>${orderId}</code></h1>
    ${lookupForm(orderId)}
    <p data-testid="unknown-order">
      Not in the write model, the read model, the outbox, the dead letters, nor as a job in the orders queue.
      Check the id; an order the API has just accepted shows up here at once (its job is queued).
    </p>`;
}
