import type { Context } from 'hono';
import { html, raw } from 'hono/html';
import type { ContentfulStatusCode } from 'hono/utils/http-status';
import type { DashboardSession } from '../auth/sessions.ts';
import { BASE_PATH } from '../context.ts';

/** Server-rendered markup: every interpolated value is HTML-escaped by `html`. */
export type Html = ReturnType<typeof html>;

// The pages need no script at all, so the policy forbids every script: even a payload that slipped
// past escaping could not run.
const CSP =
  "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; form-action 'self'; " +
  "frame-ancestors 'none'; base-uri 'none'";

const STYLE = `
  :root { color-scheme: light; --fg: #1f2933; --muted: #616e7c; --line: #d9e2ec; --accent: #2f6fde; --bad: #c53030; --ok: #2f855a; }
  * { box-sizing: border-box; }
  body { margin: 0; font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: var(--fg); background: #f5f7fa; }
  header { display: flex; align-items: center; gap: 20px; padding: 10px 24px; background: #102a43; color: #fff; }
  header .brand { font-weight: 700; letter-spacing: .02em; }
  header nav a { color: #d9e2ec; text-decoration: none; margin-right: 16px; }
  header nav a[aria-current=page] { color: #fff; border-bottom: 2px solid #fff; }
  header .who { margin-left: auto; display: flex; gap: 12px; align-items: center; color: #bcccdc; }
  header .who button { background: transparent; color: #fff; border: 1px solid #829ab1; }
  main { padding: 20px 24px; max-width: 1400px; }
  h1 { font-size: 20px; margin: 0 0 16px; }
  h2 { font-size: 16px; margin: 24px 0 8px; }
  table { width: 100%; border-collapse: collapse; background: #fff; border: 1px solid var(--line); }
  th, td { text-align: left; padding: 6px 10px; border-bottom: 1px solid var(--line); vertical-align: top; }
  th { background: #f0f4f8; font-weight: 600; white-space: nowrap; }
  code, pre { font: 12px/1.4 ui-monospace, "SFMono-Regular", Menlo, monospace; }
  pre { background: #fff; border: 1px solid var(--line); padding: 10px; overflow: auto; max-height: 420px; white-space: pre-wrap; word-break: break-all; }
  td code { display: inline-block; max-width: 360px; overflow: hidden; text-overflow: ellipsis; white-space: nowrap; vertical-align: bottom; }
  form.filters { display: flex; gap: 10px; align-items: end; flex-wrap: wrap; margin-bottom: 14px; }
  label { display: flex; flex-direction: column; gap: 3px; font-size: 12px; color: var(--muted); }
  input, select, button { font: inherit; padding: 5px 8px; border: 1px solid #9fb3c8; border-radius: 4px; background: #fff; }
  button { cursor: pointer; background: var(--accent); color: #fff; border-color: var(--accent); }
  button.danger { background: var(--bad); border-color: var(--bad); }
  .actions { display: flex; gap: 12px; align-items: end; margin: 12px 0; }
  .badge { display: inline-block; padding: 1px 8px; border-radius: 10px; font-size: 12px; background: #e4e7eb; }
  .badge.pending { background: #fde8e8; color: var(--bad); }
  .badge.redriven { background: #def7ec; color: var(--ok); }
  .notice { padding: 8px 12px; border-radius: 4px; margin-bottom: 12px; background: #def7ec; border: 1px solid #9ae6b4; }
  .notice.error { background: #fde8e8; border-color: #feb2b2; }
  .muted { color: var(--muted); }
  dl { display: grid; grid-template-columns: max-content 1fr; gap: 4px 16px; background: #fff; border: 1px solid var(--line); padding: 12px; }
  dt { color: var(--muted); }
  dd { margin: 0; word-break: break-all; }
  .login { max-width: 340px; margin: 80px auto; background: #fff; border: 1px solid var(--line); padding: 24px; border-radius: 6px; }
  .login form { display: flex; flex-direction: column; gap: 12px; }
  .pager { margin-top: 12px; }
`;

export interface PageOptions {
  title: string;
  body: Html;
  session?: DashboardSession | undefined;
  /** Which nav item is highlighted. */
  current?: 'dead-letters' | 'audit';
  status?: ContentfulStatusCode;
  headers?: Record<string, string>;
}

/** The hidden anti-CSRF field every state-changing form carries. */
export function csrfField(session: DashboardSession): Html {
  return html`<input type="hidden" name="csrf" value="${session.csrf}" />`;
}

export function formatDate(d: Date | null): string {
  return d
    ? d
        .toISOString()
        .replace('T', ' ')
        .replace(/\.\d+Z$/, 'Z')
    : '—';
}

function nav(session: DashboardSession, current: PageOptions['current']): Html {
  const item = (key: PageOptions['current'], href: string, label: string) =>
    html`<a href="${href}" ${current === key ? html`aria-current="page"` : ''}>${label}</a>`;
  return html`<nav>
      <a href="${BASE_PATH}">Queues</a>
      ${item('dead-letters', `${BASE_PATH}/dead-letters`, 'Dead letters')}
      ${item('audit', `${BASE_PATH}/audit`, 'Audit log')}
    </nav>
    <div class="who">
      <span data-testid="who">${session.user} (${session.role})</span>
      <form method="post" action="${BASE_PATH}/logout">
        ${csrfField(session)}<button type="submit">Log out</button>
      </form>
    </div>`;
}

/** A full HTML page with the dashboard's chrome and a script-free Content-Security-Policy. */
export function page(c: Context, options: PageOptions): Response | Promise<Response> {
  const doc = html`<!doctype html>
    <html lang="en">
      <head>
        <meta charset="utf-8" />
        <meta name="viewport" content="width=device-width, initial-scale=1" />
        <title>${options.title} · Conveyor</title>
        <style>
          ${raw(STYLE)}
        </style>
      </head>
      <body>
        <header>
          <span class="brand">Conveyor operations</span>
          ${options.session ? nav(options.session, options.current) : ''}
        </header>
        <main>${options.body}</main>
      </body>
    </html>`;
  return c.html(doc, options.status ?? 200, {
    'content-security-policy': CSP,
    'cache-control': 'no-store',
    ...options.headers,
  });
}
