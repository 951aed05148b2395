import { html } from 'hono/html';
import { AuditActions, type AuditEntry } from '../../shared/audit/audit-log.ts';
import { BASE_PATH } from '../context.ts';
import { timeTag, type Html } from './layout.ts';

/** Suggestions for the action filter (Bull Board calls are recorded as `queue.<verb>`, `job.<verb>`). */
const KNOWN_ACTIONS = [
  ...Object.values(AuditActions),
  'dead_letter.discard_bulk',
  'queue.pause',
  'queue.resume',
  'queue.clean_all',
  'queue.retry_all',
  'job.retry',
  'job.clean',
];

const STYLE = html`<style>
  table.audit td.from {
    min-width: 260px;
    max-width: 420px;
  }
  table.audit .ua {
    display: block;
    font-size: 12px;
    color: var(--muted);
    overflow-wrap: anywhere;
  }
  table.audit td.detail code {
    white-space: pre-wrap;
    overflow-wrap: anywhere;
  }
</style>`;

/** The audit log: who did what, when, from where; newest first with keyset pages. */
export function auditView(options: {
  entries: readonly AuditEntry[];
  filter: { actor?: string | undefined; action?: string | undefined };
  nextHref: string | null;
}): Html {
  const { entries, filter } = options;
  return html`${STYLE}
    <h1>Audit log</h1>
    <form class="filters" method="get" action="${BASE_PATH}/audit" aria-label="Filter the audit log">
      <label>Actor <input name="actor" value="${filter.actor ?? ''}" size="20" autocomplete="off" /></label>
      <label
        >Action
        <input
          name="action"
          value="${filter.action ?? ''}"
          size="26"
          list="audit-actions"
          autocomplete="off"
        />
      </label>
      <datalist id="audit-actions">
        ${KNOWN_ACTIONS.map((a) => html`<option value="${a}"></option>`)}
      </datalist>
      <button type="submit">Apply filters</button>
      <a href="${BASE_PATH}/audit">Reset</a>
    </form>
    ${
      entries.length === 0
        ? html`<p class="muted">No entries match.</p>`
        : html`<table class="audit" data-testid="audit">
            <thead>
              <tr>
                <th scope="col">When</th>
                <th scope="col">Actor</th>
                <th scope="col">Source</th>
                <th scope="col">Action</th>
                <th scope="col">Target</th>
                <th scope="col">Detail</th>
                <th scope="col">From (address and user agent)</th>
              </tr>
            </thead>
            <tbody>
              ${entries.map(
                (e) =>
                  html`<tr>
                    <td>${timeTag(e.at)}</td>
                    <td>${e.actor}${e.role ? html` <span class="muted">(${e.role})</span>` : ''}</td>
                    <td>${e.source}</td>
                    <td>${e.action}</td>
                    <td class="wrap">
                      ${
                        e.target && e.action.startsWith('dead_letter.')
                          ? html`<a href="${BASE_PATH}/dead-letters/${encodeURIComponent(e.target)}"
                              >${e.target}</a
                            >`
                          : (e.target ?? '—')
                      }
                    </td>
                    <td class="detail"><code>${JSON.stringify(e.detail)}</code></td>
                    <td class="from">
                      ${e.ip ?? '—'}${
                        e.userAgent
                          ? html`<span class="ua" data-testid="user-agent">${e.userAgent}</span>`
                          : ''
                      }
                    </td>
                  </tr>`,
              )}
            </tbody>
          </table>`
    }
    ${options.nextHref ? html`<p class="pager"><a href="${options.nextHref}">Older →</a></p>` : ''}`;
}
