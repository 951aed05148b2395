import { html } from 'hono/html';
import type { AuditEntry } from '../../shared/audit/audit-log.ts';
import type { DeadLetterRecord } from '../../shared/dead-letters/dead-letter.ts';
import type { DashboardSession } from '../auth/sessions.ts';
import { BASE_PATH } from '../context.ts';
import type { RedriveOutcome } from '../dead-letters/outcome.ts';
import { csrfField, timeTag, type Html } from './layout.ts';

export interface DeadLetterListFilter {
  status: 'pending' | 'redriven' | 'discarded' | 'all';
  transport: 'bullmq' | 'kafka' | 'rabbitmq' | 'sqs' | 'all';
  origin?: string | undefined;
  subjectId?: string | undefined;
}

/**
 * Fixed messages shown after an action, chosen by code so no request text is ever echoed. A sent
 * redrive is not called a success: the page goes on to show what the message did.
 */
export const NOTICES = {
  redrive_sent: {
    text: 'Redrive sent: the message is back on its origin. What it did there is shown below.',
    tone: 'info',
  },
  discarded: { text: 'Discarded: it stays on record and will not be redriven.', tone: 'ok' },
  not_pending: { text: 'Nothing done: this dead letter was already handled by someone else.', tone: 'error' },
  not_found: { text: 'Nothing done: no such dead letter.', tone: 'error' },
  failed: {
    text: 'The redrive could not be sent: the dead letter is pending again (see the audit log).',
    tone: 'error',
  },
} as const;
export type NoticeCode = keyof typeof NOTICES;

/** Counts reported after a bulk action (numbers only, so they are safe to carry in the URL). */
export interface BulkReport {
  action: 'redrive' | 'discard';
  done: number;
  skipped: number;
  failed: number;
}

export const detailHref = (id: string): string => `${BASE_PATH}/dead-letters/${encodeURIComponent(id)}`;

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
  return html`<div class="notice ${n.tone}" role="status" data-testid="notice">${n.text}</div>`;
}

function bulkNotice(r: BulkReport | undefined): Html {
  if (!r) return html``;
  const verb = r.action === 'redrive' ? 'Redrive sent for' : 'Discarded';
  const parts = [`${verb} ${r.done} dead letter${r.done === 1 ? '' : 's'}`];
  if (r.skipped > 0) parts.push(`${r.skipped} already handled by someone else`);
  if (r.failed > 0) parts.push(`${r.failed} could not be sent and are pending again`);
  const tail = r.action === 'redrive' ? ' The Outcome column shows what each message did.' : '';
  return html`<div
    class="notice ${r.failed > 0 ? 'error' : r.action === 'redrive' ? 'info' : 'ok'}"
    role="status"
    data-testid="notice"
  >
    ${parts.join('; ')}.${tail}
  </div>`;
}

/** What the last redrive led to, in words and a badge (`data-outcome` names the kind for tests). */
export function outcomeView(o: RedriveOutcome | undefined, long = false): Html {
  if (!o || o.kind === 'never' || o.kind === 'discarded') return html`<span class="muted">—</span>`;
  switch (o.kind) {
    case 'queued':
      return html`<span data-outcome="queued"
        ><span class="badge queued">queued again</span>${
          long
            ? html` since the redrive at ${timeTag(o.redrivenAt, true)}: ${o.detail}`
            : html` <span class="small muted">${o.detail}</span>`
        }</span
      >`;
    case 'failed_again':
      return html`<span data-outcome="failed_again"
        ><span class="badge failed_again">failed again</span>${
          long
            ? html` at ${timeTag(o.failedAt, true)}, after the redrive at ${timeTag(o.redrivenAt, true)}:
                <strong class="wrap" data-testid="outcome-error">${o.error}</strong>`
            : html` <span class="small">${clip(o.error, 120)}</span>`
        }</span
      >`;
    case 'done':
      return html`<span data-outcome="done"
        ><span class="badge done">done</span> ${o.detail}${o.at ? html` at ${timeTag(o.at)}` : ''}</span
      >`;
    case 'send_failed':
      return html`<span data-outcome="send_failed"
        ><span class="badge send_failed">redrive not sent</span> <span class="small">${o.error}</span></span
      >`;
  }
}

function filterParams(filter: DeadLetterListFilter): URLSearchParams {
  const p = new URLSearchParams({ transport: filter.transport });
  if (filter.origin) p.set('origin', filter.origin);
  if (filter.subjectId) p.set('subjectId', filter.subjectId);
  return p;
}

function bulkActions(filter: DeadLetterListFilter, session: DashboardSession, pending: number): Html {
  if (session.role !== 'admin' || pending === 0 || (filter.status !== 'pending' && filter.status !== 'all'))
    return html``;
  const hidden = [...filterParams(filter)].map(
    ([k, v]) => html`<input type="hidden" name="${k}" value="${v}" />`,
  );
  return html`<div class="actions" data-testid="bulk">
    <form method="get" action="${BASE_PATH}/dead-letters/bulk">
      ${hidden}<input type="hidden" name="action" value="redrive" />
      <button type="submit" class="secondary" data-testid="bulk-redrive">Redrive all pending matches…</button>
    </form>
    <form method="get" action="${BASE_PATH}/dead-letters/bulk">
      ${hidden}<input type="hidden" name="action" value="discard" />
      <button type="submit" class="secondary" data-testid="bulk-discard">Discard all pending matches…</button>
    </form>
    <span class="muted small">You confirm on the next page, which says how many.</span>
  </div>`;
}

/** The unified dead letters of every transport, newest first, with filters and keyset pages. */
export function deadLetterListView(options: {
  rows: readonly DeadLetterRecord[];
  outcomes: ReadonlyMap<string, RedriveOutcome>;
  filter: DeadLetterListFilter;
  session: DashboardSession;
  nextHref: string | null;
  bulk?: BulkReport | undefined;
  notice?: NoticeCode | undefined;
}): Html {
  const { rows, filter } = options;
  const pendingShown = rows.filter((r) => r.status === 'pending').length;
  return html`<h1>Dead letters</h1>
    ${noticeView(options.notice)} ${bulkNotice(options.bulk)}
    <form class="filters" method="get" action="${BASE_PATH}/dead-letters" aria-label="Filter dead letters">
      <label
        >Status
        <select name="status">
          ${['pending', 'redriven', 'discarded', 'all'].map((s) => option(s, filter.status))}
        </select></label
      >
      <label
        >Transport
        <select name="transport">
          ${['all', 'bullmq', 'kafka', 'rabbitmq', 'sqs'].map((t) => option(t, filter.transport))}
        </select></label
      >
      <label
        >Origin queue or topic
        <input name="origin" value="${filter.origin ?? ''}" size="22" autocomplete="off" />
      </label>
      <label
        >Subject (order or refund id)
        <input
          name="subjectId"
          value="${filter.subjectId ?? ''}"
          size="38"
          autocomplete="off"
          spellcheck="false"
        />
      </label>
      <button type="submit">Apply filters</button>
      <a href="${BASE_PATH}/dead-letters">Reset</a>
    </form>
    ${bulkActions(filter, options.session, pendingShown)}
    ${
      rows.length === 0
        ? html`<p class="muted" data-testid="empty">No dead letters match.</p>`
        : html`<table data-testid="dead-letters">
            <thead>
              <tr>
                <th scope="col">Failed at</th>
                <th scope="col">Transport</th>
                <th scope="col">Origin</th>
                <th scope="col">Error</th>
                <th scope="col" class="num">Attempts</th>
                <th scope="col">Payload</th>
                <th scope="col">Status</th>
                <th scope="col">Outcome of last redrive</th>
                <th scope="col"><span class="sr-only">Details</span></th>
              </tr>
            </thead>
            <tbody>
              ${rows.map(
                (d) =>
                  html`<tr data-id="${d.id}">
                    <td>${timeTag(d.failedAt)}</td>
                    <td>${d.transport}</td>
                    <td>${d.origin} <span class="muted">(${d.kind})</span></td>
                    <td class="wrap">${clip(d.error, 200)}</td>
                    <td class="num">${d.attempts}</td>
                    <td>
                      <code class="clip" title="${clip(d.payload.toString('utf8'), 1000)}"
                        >${clip(d.payload.toString('utf8'), 160)}</code
                      >
                    </td>
                    <td data-testid="row-status">${badge(d.status)}</td>
                    <td data-testid="row-outcome">${outcomeView(options.outcomes.get(d.id))}</td>
                    <td><a href="${detailHref(d.id)}" aria-label="Open dead letter ${d.id}">Open</a></td>
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
    <form method="post" action="${action}/discard">
      ${csrfField(session)}
      <label>Reason for discarding (optional) <input name="reason" maxlength="500" size="40" /></label>
      <button type="submit" class="danger" data-testid="discard">Discard</button>
    </form>
  </div>`;
}

function outcomePanel(o: RedriveOutcome): Html {
  if (o.kind === 'never' || o.kind === 'discarded') return html``;
  const tone = { queued: 'info', failed_again: 'error', done: 'ok', send_failed: 'error' }[o.kind];
  return html`<div class="notice ${tone}" data-testid="outcome" role="status" aria-live="polite">
    <strong>After the last redrive:</strong> ${outcomeView(o, true)}
  </div>`;
}

/** One dead letter: where it came from, why it failed, its original bytes, and what was done with it. */
export function deadLetterDetailView(options: {
  dl: DeadLetterRecord;
  outcome: RedriveOutcome;
  session: DashboardSession;
  history: readonly AuditEntry[];
  notice?: NoticeCode | undefined;
}): Html {
  const { dl, session } = options;
  return html`<p><a href="${BASE_PATH}/dead-letters">← Dead letters</a></p>
    <h1>Dead letter <code class="wrap">${dl.id}</code></h1>
    ${noticeView(options.notice)} ${outcomePanel(options.outcome)} ${actionsView(dl, session)}
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
      <dd>
        ${
          dl.subjectId
            ? html`<a href="${BASE_PATH}/orders/${encodeURIComponent(dl.subjectId)}" data-testid="order-link"
                >${dl.subjectId}</a
              >`
            : '—'
        }
      </dd>
      <dt>Correlation id</dt>
      <dd>${dl.correlationId ?? '—'}</dd>
      <dt>Attempts</dt>
      <dd>${dl.attempts}</dd>
      <dt>Redriven</dt>
      <dd>${dl.redriveCount} time(s)</dd>
      <dt>First failed</dt>
      <dd>${timeTag(dl.firstFailedAt)}</dd>
      <dt>Failed</dt>
      <dd>${timeTag(dl.failedAt)}</dd>
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
        : html`<table data-testid="history">
            <thead>
              <tr>
                <th scope="col">When</th>
                <th scope="col">Who</th>
                <th scope="col">Action</th>
                <th scope="col">Detail</th>
              </tr>
            </thead>
            <tbody>
              ${options.history.map(
                (e) =>
                  html`<tr>
                    <td>${timeTag(e.at)}</td>
                    <td>${e.actor} (${e.role ?? e.source})</td>
                    <td>${e.action}</td>
                    <td class="wrap"><code>${JSON.stringify(e.detail)}</code></td>
                  </tr>`,
              )}
            </tbody>
          </table>`
    }`;
}

/** The confirmation of a bulk action: what it covers and how many, before anything happens. */
export function bulkConfirmView(options: {
  action: 'redrive' | 'discard';
  filter: DeadLetterListFilter;
  count: number;
  more: boolean;
  /** Opaque token of the newest dead letter included, and when it failed (for people). */
  through: { token: string; failedAt: string } | null;
  session: DashboardSession;
}): Html {
  const { action, filter, count } = options;
  const back = `${BASE_PATH}/dead-letters?${new URLSearchParams({ status: 'pending', ...Object.fromEntries(filterParams(filter)) }).toString()}`;
  const criteria = [
    `transport: ${filter.transport}`,
    `origin: ${filter.origin ?? 'any'}`,
    `subject: ${filter.subjectId ?? 'any'}`,
  ].join(' · ');
  if (count === 0 || !options.through)
    return html`<h1>Nothing to ${action}</h1>
      <p>No pending dead letter matches (${criteria}).</p>
      <p><a href="${back}">← Dead letters</a></p>`;
  const noun = `${count} dead letter${count === 1 ? '' : 's'}`;
  return html`<h1>${action === 'redrive' ? 'Redrive' : 'Discard'} ${noun}?</h1>
    <p data-testid="bulk-count">
      This ${action === 'redrive' ? 'sends' : 'discards'} <strong>${count}</strong> pending dead
      letter${count === 1 ? '' : 's'}
      (${criteria})${
        options.more
          ? html`, the oldest ${count} of more than ${count} that match — run it again for the rest`
          : ''
      }.
      ${
        action === 'redrive'
          ? 'Each goes back to its origin; processing is idempotent, so a redrive never doubles an effect.'
          : 'They stay on record but will never be redriven.'
      }
      Dead letters arriving after this page was shown are not included.
    </p>
    <form method="post" action="${BASE_PATH}/dead-letters/bulk" class="actions">
      ${csrfField(options.session)}
      <input type="hidden" name="action" value="${action}" />
      ${[...filterParams(filter)].map(([k, v]) => html`<input type="hidden" name="${k}" value="${v}" />`)}
      <input type="hidden" name="count" value="${count}" />
      <input type="hidden" name="through" value="${options.through.token}" />
      ${
        action === 'discard'
          ? html`<label
              >Reason for discarding (optional) <input name="reason" maxlength="500" size="40"
            /></label>`
          : ''
      }
      <button type="submit" class="${action === 'discard' ? 'danger' : ''}" data-testid="bulk-confirm">
        ${action === 'redrive' ? 'Redrive' : 'Discard'} ${noun}
      </button>
      <a href="${back}">Cancel</a>
    </form>
    <p class="muted small">Newest included: failed at ${options.through.failedAt}</p>`;
}
