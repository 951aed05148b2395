import { html } from 'hono/html';
import type { AuditEntry } from '../../shared/audit/audit-log.ts';
import { BASE_PATH } from '../context.ts';
import { formatDate, type Html } from './layout.ts';

/** The audit log: who did what, when, from where; newest first with keyset pages. */
export function auditView(options: {
  entries: readonly AuditEntry[];
  filter: { actor?: string | undefined; action?: string | undefined };
  nextHref: string | null;
}): Html {
  const { entries, filter } = options;
  return html`<h1>Audit log</h1>
    <form class="filters" method="get" action="${BASE_PATH}/audit">
      <label>Actor <input name="actor" value="${filter.actor ?? ''}" /></label>
      <label
        >Action <input name="action" value="${filter.action ?? ''}" placeholder="dead_letter.redrive"
      /></label>
      <button type="submit">Filter</button>
    </form>
    ${
      entries.length === 0
        ? html`<p class="muted">No entries match.</p>`
        : html`<table data-testid="audit">
            <thead>
              <tr>
                <th>When</th>
                <th>Actor</th>
                <th>Source</th>
                <th>Action</th>
                <th>Target</th>
                <th>Detail</th>
                <th>From</th>
              </tr>
            </thead>
            <tbody>
              ${entries.map(
                (e) =>
                  html`<tr>
                    <td>${formatDate(e.at)}</td>
                    <td>${e.actor}${e.role ? html` <span class="muted">(${e.role})</span>` : ''}</td>
                    <td>${e.source}</td>
                    <td>${e.action}</td>
                    <td>${e.target ?? '—'}</td>
                    <td><code title="${JSON.stringify(e.detail)}">${JSON.stringify(e.detail)}</code></td>
                    <td>${e.ip ?? '—'} <span class="muted">${(e.userAgent ?? '').slice(0, 60)}</span></td>
                  </tr>`,
              )}
            </tbody>
          </table>`
    }
    ${options.nextHref ? html`<p class="pager"><a href="${options.nextHref}">Older →</a></p>` : ''}`;
}
