import { html } from 'hono/html';
import type { AuditEntry } from '../../shared/audit/audit-log.ts';
import type { DeadLetterRecord } from '../../shared/dead-letters/dead-letter.ts';
import type { DashboardSession } from '../auth/sessions.ts';
import { BASE_PATH } from '../context.ts';
import { csrfField, formatDate, type Html } from './layout.ts';

export interface DeadLetterListFilter {
  status: 'pending' | 'redriven' | 'discarded' | 'all';
  transport: 'bullmq' | 'kafka' | 'rabbitmq' | 'all';
  origin?: string | undefined;
  orderId?: string | undefined;
}

/** Fixed messages shown after an action, chosen by code so no request text is ever echoed. */
export const NOTICES = {
  redriven: { text: 'Redriven: the message is back on its origin queue or topic.', error: false },
  discarded: { text: 'Discarded: it stays on record and will not be redriven.', error: false },
  not_pending: { text: 'Nothing done: this dead letter was already handled by someone else.', error: true },
  not_found: { text: 'Nothing done: no such dead letter.', error: true },
  failed: { text: 'The redrive failed: the dead letter is pending again (see the audit log).', error: true },
} as const;
export type NoticeCode = keyof typeof NOTICES;

const detailHref = (id: string) => `${BASE_PATH}/dead-letters/${encodeURIComponent(id)}`;

const clip = (s: string, max: number) => (s.length > max ? `${s.slice(0, max)}…` : s);

function badge(status: string): Html {
  return html`<span class="badge ${status}">${status}</span>`;
}

/** The payload as an operator reads it: pretty JSON when it parses, the raw text otherwise. */
export function payloadText(payload: Buffer): string {
  const text = payload.toString('utf8');
  try {
    return JSON.stringify(JSON.parse(text), null, 2);
  } catch {
    return text;
  }
}

function option(value: string, current: string, label = value): Html {
  return html`<option value="${value}" ${value === current ? html`selected` : ''}>${label}</option>`;
}

export function noticeView(code: NoticeCode | undefined): Html {
  if (!code) return html``;
  const n = NOTICES[code];
  return html`<div class="notice ${n.error ? 'error' : ''}" role="status" data-testid="notice">
    ${n.text}
  </div>`;
}

/** The unified dead letters of every transport, newest first, with filters and keyset pages. */
export function deadLetterListView(options: {
  rows: readonly DeadLetterRecord[];
  filter: DeadLetterListFilter;
  nextHref: string | null;
  notice?: NoticeCode | undefined;
}): Html {
  const { rows, filter } = options;
  return html`<h1>Dead letters</h1>
    ${noticeView(options.notice)}
    <form class="filters" method="get" action="${BASE_PATH}/dead-letters">
      <label
        >Status
        <select name="status">
          ${['pending', 'redriven', 'discarded', 'all'].map((s) => option(s, filter.status))}
        </select></label
      >
      <label
        >Transport
        <select name="transport">
          ${['all', 'bullmq', 'kafka', 'rabbitmq'].map((t) => option(t, filter.transport))}
        </select></label
      >
      <label>Origin <input name="origin" value="${filter.origin ?? ''}" placeholder="orders" /></label>
      <label>Order id <input name="orderId" value="${filter.orderId ?? ''}" /></label>
      <button type="submit">Filter</button>
    </form>
    ${
      rows.length === 0
        ? html`<p class="muted" data-testid="empty">No dead letters match.</p>`
        : html`<table data-testid="dead-letters">
            <thead>
              <tr>
                <th>Failed at</th>
                <th>Transport</th>
                <th>Origin</th>
                <th>Error</th>
                <th>Attempts</th>
                <th>Payload</th>
                <th>Status</th>
                <th></th>
              </tr>
            </thead>
            <tbody>
              ${rows.map(
                (d) =>
                  html`<tr data-id="${d.id}">
                    <td>${formatDate(d.failedAt)}</td>
                    <td>${d.transport}</td>
                    <td>${d.origin} <span class="muted">(${d.kind})</span></td>
                    <td>${clip(d.error, 200)}</td>
                    <td>${d.attempts}</td>
                    <td><code>${clip(d.payload.toString('utf8'), 160)}</code></td>
                    <td>${badge(d.status)}</td>
                    <td><a href="${detailHref(d.id)}">Open</a></td>
                  </tr>`,
              )}
            </tbody>
          </table>`
    }
    ${options.nextHref ? html`<p class="pager"><a href="${options.nextHref}">Older →</a></p>` : ''}`;
}

function actionsView(dl: DeadLetterRecord, session: DashboardSession): Html {
  if (dl.status !== 'pending')
    return html`<p class="muted">This dead letter is ${dl.status}; nothing left to do.</p>`;
  if (session.role !== 'admin') {
    return html`<p class="muted" data-testid="read-only">
      Read-only: only an admin can redrive or discard.
    </p>`;
  }
  const action = detailHref(dl.id);
  return html`<div class="actions">
    <form method="post" action="${action}/redrive">
      ${csrfField(session)}
      <button type="submit" data-testid="redrive">Redrive</button>
    </form>
    <form method="post" action="${action}/discard" class="actions">
      ${csrfField(session)}
      <label>Reason <input name="reason" maxlength="500" placeholder="optional" /></label>
      <button type="submit" class="danger" data-testid="discard">Discard</button>
    </form>
  </div>`;
}

/** One dead letter: where it came from, why it failed, its original bytes, and what was done with it. */
export function deadLetterDetailView(options: {
  dl: DeadLetterRecord;
  session: DashboardSession;
  history: readonly AuditEntry[];
  notice?: NoticeCode | undefined;
}): Html {
  const { dl, session } = options;
  return html`<p><a href="${BASE_PATH}/dead-letters">← Dead letters</a></p>
    <h1>Dead letter <code>${dl.id}</code></h1>
    ${noticeView(options.notice)} ${actionsView(dl, session)}
    <dl>
      <dt>Status</dt>
      <dd data-testid="status">${badge(dl.status)}</dd>
      <dt>Transport</dt>
      <dd>${dl.transport}</dd>
      <dt>Origin</dt>
      <dd>${dl.origin} (${dl.kind})</dd>
      <dt>Message key</dt>
      <dd>${dl.messageKey ?? '—'}</dd>
      <dt>Order</dt>
      <dd>${dl.orderId ?? '—'}</dd>
      <dt>Correlation id</dt>
      <dd>${dl.correlationId ?? '—'}</dd>
      <dt>Attempts</dt>
      <dd>${dl.attempts}</dd>
      <dt>Redriven</dt>
      <dd>${dl.redriveCount} time(s)</dd>
      <dt>First failed</dt>
      <dd>${formatDate(dl.firstFailedAt)}</dd>
      <dt>Failed</dt>
      <dd>${formatDate(dl.failedAt)}</dd>
      <dt>Error</dt>
      <dd data-testid="error">${dl.error}</dd>
    </dl>
    <h2>Payload</h2>
    <pre data-testid="payload">${payloadText(dl.payload)}</pre>
    <h2>Headers</h2>
    <pre>${JSON.stringify(dl.headers, null, 2)}</pre>
    ${
      dl.stack
        ? html`<h2>Stack</h2>
            <pre>${dl.stack}</pre>`
        : ''
    }
    <h2>History</h2>
    ${
      options.history.length === 0
        ? html`<p class="muted">No operator action yet.</p>`
        : html`<table>
            <tbody>
              ${options.history.map(
                (e) =>
                  html`<tr>
                    <td>${formatDate(e.at)}</td>
                    <td>${e.actor} (${e.role ?? e.source})</td>
                    <td>${e.action}</td>
                    <td><code>${JSON.stringify(e.detail)}</code></td>
                  </tr>`,
              )}
            </tbody>
          </table>`
    }`;
}
