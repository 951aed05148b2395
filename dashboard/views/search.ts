import { html } from 'hono/html';
import type { DashboardSession } from '../auth/sessions.ts';
import { BASE_PATH } from '../context.ts';
import { CommandStatus, type CommandSummary } from '../../shared/search/query.ts';
import type { BulkActionRecord } from '../../shared/bulk/store.ts';
import { csrfField, timeTag, type Html } from './layout.ts';
import { orderHref } from './orders.ts';

export const SEARCH_PATH = `${BASE_PATH}/search`;
export const BULK_PATH = `${SEARCH_PATH}/bulk`;
export const bulkHref = (id: string) => `${BULK_PATH}/${encodeURIComponent(id)}`;

/** The search form's fields as typed (strings), echoed back into the form and into links. */
export interface SearchFilter {
  module: string;
  status: readonly string[];
  tenant: string;
  apiKey: string;
  subject: string;
  from: string;
  to: string;
  correlationId: string;
  traceId: string;
  errorCode: string;
}

/** The filter as a query string (bulk links and hidden fields carry it unchanged). */
export function filterParams(f: SearchFilter): URLSearchParams {
  const p = new URLSearchParams();
  for (const [k, v] of Object.entries(f) as [keyof SearchFilter, string | readonly string[]][]) {
    if (Array.isArray(v)) for (const s of v) p.append(k, s);
    else if (typeof v === 'string' && v !== '') p.set(k, v);
  }
  return p;
}

/** Where a command's story is: an order's own page; a refund's is its order's. */
export function storyHref(c: Pick<CommandSummary, 'module' | 'id' | 'subject'>): string | null {
  if (c.module === 'orders') return orderHref(c.id);
  if (c.module === 'refunds' && c.subject) return orderHref(c.subject);
  return null;
}

const text = (name: keyof SearchFilter, label: string, value: string, placeholder: string) =>
  html`<label
    >${label}<input name="${name}" value="${value}" placeholder="${placeholder}" data-testid="filter-${name}"
  /></label>`;

function filterForm(f: SearchFilter, modules: readonly string[]): Html {
  return html`<form class="filters" method="get" action="${SEARCH_PATH}" data-testid="search-form">
    <label
      >Module
      <select name="module" data-testid="filter-module">
        <option value="" ${f.module === '' ? 'selected' : ''}>all</option>
        ${modules.map((m) => html`<option value="${m}" ${f.module === m ? 'selected' : ''}>${m}</option>`)}
      </select></label
    >
    <fieldset style="border:0;padding:0;margin:0;display:flex;gap:8px;align-items:end;flex-wrap:wrap">
      <legend class="small muted" style="font-weight:600">Status (any of)</legend>
      ${CommandStatus.options.map(
        (s) =>
          html`<label style="flex-direction:row;align-items:center;font-weight:400"
            ><input
              type="checkbox"
              name="status"
              value="${s}"
              ${f.status.includes(s) ? 'checked' : ''}
              data-testid="filter-status-${s}"
            />${s}</label
          >`,
      )}
    </fieldset>
    ${text('tenant', 'Tenant', f.tenant, 'key or key/sub')} ${text('apiKey', 'API key', f.apiKey, 'key id')}
    ${text('subject', 'Subject', f.subject, 'customer or order id')}
    ${text('from', 'Accepted from (UTC)', f.from, '2026-12-01T00:00')}
    ${text('to', 'to (UTC, excl.)', f.to, '2026-12-02T00:00')}
    ${text('correlationId', 'Correlation id', f.correlationId, '')}
    ${text('traceId', 'Trace id', f.traceId, '32 hex')}
    ${text('errorCode', 'Error starts with', f.errorCode, 'payment declined')}
    <button type="submit" data-testid="search-submit">Search</button>
    <a href="${SEARCH_PATH}" class="small">Clear</a>
  </form>`;
}

function cancelButton(c: CommandSummary, session: DashboardSession, filter: SearchFilter): Html {
  return html`<form
    method="post"
    action="${SEARCH_PATH}/${encodeURIComponent(c.module)}/${encodeURIComponent(c.id)}/cancel"
    style="margin:0"
  >
    ${csrfField(session)}<input type="hidden" name="back" value="${filterParams(filter).toString()}" />
    <button type="submit" class="danger" data-testid="cancel-${c.id}">Cancel</button>
  </form>`;
}

export interface SearchViewModel {
  filter: SearchFilter;
  modules: readonly string[];
  rows: readonly CommandSummary[] | null;
  nextHref: string | null;
  session: DashboardSession;
  notice?: { kind: 'ok' | 'error' | 'info'; text: string } | undefined;
  /** Cancel buttons (admins, when the console can cancel). */
  canCancel: boolean;
  /** The bulk action form (admins, when the console can run bulk actions). */
  canBulk: boolean;
  /** Only decided commands are searched (the console has no Redis for the pending ones). */
  decidedOnly: boolean;
}

export function searchView(m: SearchViewModel): Html {
  const pending = (c: CommandSummary) => c.status === 'queued' || c.status === 'processing';
  const params = filterParams(m.filter).toString();
  return html`<h1>Search commands</h1>
    ${
      m.notice
        ? html`<div
            class="notice ${m.notice.kind === 'ok' ? '' : m.notice.kind}"
            role="status"
            data-testid="notice"
          >
            ${m.notice.text}
          </div>`
        : ''
    }
    ${filterForm(m.filter, m.modules)}
    ${
      m.decidedOnly
        ? html`<p class="muted small">Decided commands only: this console is not connected to the queues.</p>`
        : ''
    }
    ${
      m.rows === null
        ? ''
        : m.rows.length === 0
          ? html`<p data-testid="no-results">No command matches.</p>`
          : html`<table data-testid="results">
              <thead>
                <tr>
                  <th>Accepted</th>
                  <th>Module</th>
                  <th>Command</th>
                  <th>Status</th>
                  <th>Tenant</th>
                  <th>API key</th>
                  <th>Subject</th>
                  <th>Correlation / trace</th>
                  <th>Error</th>
                  <th>Decided</th>
                  ${m.canCancel ? html`<th><span class="sr-only">Actions</span></th>` : ''}
                </tr>
              </thead>
              <tbody>
                ${m.rows.map((c) => {
                  const href = storyHref(c);
                  return html`<tr data-testid="result" data-id="${c.id}" data-status="${c.status}">
                    <td>${timeTag(c.acceptedAt ? new Date(c.acceptedAt) : null, true)}</td>
                    <td>${c.module}</td>
                    <td>
                      ${href ? html`<a href="${href}" data-testid="story-link"><code>${c.id}</code></a>` : html`<code>${c.id}</code>`}
                    </td>
                    <td><span class="badge ${c.status}" data-testid="status">${c.status}</span></td>
                    <td class="wrap">${c.tenant ?? '—'}</td>
                    <td>${c.apiKey ?? '—'}</td>
                    <td class="wrap">${c.subject ?? '—'}</td>
                    <td class="small">
                      <code class="clip">${c.correlationId ?? '—'}</code><br /><code class="clip"
                        >${c.traceId ?? ''}</code
                      >
                    </td>
                    <td class="wrap small">${c.errorCode ?? ''}</td>
                    <td>${timeTag(c.decidedAt ? new Date(c.decidedAt) : null)}</td>
                    ${m.canCancel ? html`<td>${pending(c) ? cancelButton(c, m.session, m.filter) : ''}</td>` : ''}
                  </tr>`;
                })}
              </tbody>
            </table>`
    }
    ${m.nextHref ? html`<p class="pager"><a href="${m.nextHref}" data-testid="next-page">Next page →</a></p>` : ''}
    ${
      m.canBulk && m.rows !== null
        ? html`<h2>Bulk action on this search</h2>
            <form class="actions" method="get" action="${BULK_PATH}" data-testid="bulk-form">
              <input type="hidden" name="filter" value="${params}" />
              <label
                >Action
                <select name="action" data-testid="bulk-action">
                  <option value="redrive">redrive (its dead letters)</option>
                  <option value="cancel">cancel (pending commands)</option>
                  <option value="replay">replay (rejected or dead-lettered, as new commands)</option>
                </select></label
              >
              <button type="submit" class="secondary" data-testid="bulk-dry-run">Dry run</button>
              <span class="small muted"
                >Counts what it would touch; nothing runs until you confirm that count.</span
              >
            </form>`
        : ''
    }`;
}

/** The dry run's answer: the count, and the confirmation that states it. */
export function bulkConfirmView(o: {
  action: string;
  filter: SearchFilter;
  count: number;
  token: string;
  session: DashboardSession;
}): Html {
  const params = filterParams(o.filter);
  const described = [...params.entries()].map(([k, v]) => `${k}=${v}`).join(', ') || 'every command';
  return html`<h1>Confirm bulk ${o.action}</h1>
    <p>Selection: <code data-testid="bulk-query">${described}</code></p>
    <p data-testid="bulk-count">
      A ${o.action} of this selection touches <strong>${o.count}</strong> ${o.count === 1 ? 'item' : 'items'}
      now.
    </p>
    ${
      o.count === 0
        ? html`<p><a href="${SEARCH_PATH}?${params.toString()}">← Back to the search</a></p>`
        : html`<form method="post" action="${BULK_PATH}" class="actions">
              ${csrfField(o.session)}
              <input type="hidden" name="filter" value="${params.toString()}" />
              <input type="hidden" name="action" value="${o.action}" />
              <input type="hidden" name="token" value="${o.token}" />
              <input type="hidden" name="count" value="${String(o.count)}" />
              <button type="submit" class="danger" data-testid="bulk-confirm">
                Confirm: ${o.action} ${o.count} items
              </button>
              <a href="${SEARCH_PATH}?${params.toString()}">Cancel</a>
            </form>
            <p class="small muted">
              Runs in the background at a bounded rate (live traffic keeps its latency), resumes after a
              crash, and is recorded in the audit log with this query, you, and the counts.
            </p>`
    }`;
}

export function bulkProgressView(a: BulkActionRecord): Html {
  const done = a.status === 'completed' || a.status === 'failed' || a.status === 'cancelled';
  return html`<h1>Bulk ${a.action}</h1>
    <dl data-testid="bulk-progress">
      <dt>Status</dt>
      <dd>
        <span
          class="badge ${done ? (a.status === 'completed' ? 'done' : 'bad') : 'info'}"
          data-testid="bulk-status"
          >${a.status}</span
        >
      </dd>
      <dt>Expected</dt>
      <dd data-testid="bulk-expected">${a.expected}</dd>
      <dt>Touched</dt>
      <dd data-testid="bulk-touched">${a.touched}</dd>
      <dt>Succeeded / skipped / failed</dt>
      <dd data-testid="bulk-counts">${a.succeeded} / ${a.skipped} / ${a.failed}</dd>
      <dt>Query</dt>
      <dd><code>${JSON.stringify(a.query)}</code></dd>
      <dt>By</dt>
      <dd>${a.createdBy.actor}</dd>
      <dt>Created</dt>
      <dd>${timeTag(a.createdAt)}</dd>
      <dt>Finished</dt>
      <dd>${timeTag(a.finishedAt)}</dd>
      ${
        a.error
          ? html`<dt>Error</dt>
              <dd class="wrap">${a.error}</dd>`
          : ''
      }
    </dl>
    ${done ? '' : html`<p class="small muted">This page reloads every few seconds until the action ends.</p>`}
    <p><a href="${SEARCH_PATH}">← Search</a></p>`;
}
