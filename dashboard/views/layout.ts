import type { Context } from 'hono';
import { html, raw } from 'hono/html';
import type { ContentfulStatusCode } from 'hono/utils/http-status';
import type { DashboardSession } from '../auth/sessions.ts';
import { BASE_PATH, BOARD_PATH } from '../context.ts';
import { FAVICON_PATH } from './favicon.ts';

/** Server-rendered markup: every interpolated value is HTML-escaped by `html`. */
export type Html = ReturnType<typeof html>;

/**
 * Our pages need no script at all, so the policy forbids every script (even a payload that slipped
 * past escaping could not run) and every request to another origin: fonts are the system's, the icon
 * and charts are our own (inline SVG).
 */
export const PAGE_CSP =
  "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; form-action 'self'; " +
  "frame-ancestors 'none'; base-uri 'none'";

/** The top bar's height; Bull Board's own header is pushed down by as much. */
export const BAR_HEIGHT_PX = 44;

/**
 * The top bar, shared by our pages and Bull Board's (which it is injected into). Every rule is scoped
 * to `cv-` classes and sets what it relies on, so neither page's stylesheet bends the other.
 */
export const BAR_STYLE = `
  .cv-bar { position: fixed; top: 0; left: 0; right: 0; z-index: 200; height: ${BAR_HEIGHT_PX}px; box-sizing: border-box;
    display: flex; align-items: stretch; gap: 20px; padding: 0 20px; margin: 0; background: #14232b; color: #d5e0e6;
    font: 14px/1.4 system-ui, -apple-system, "Segoe UI", Roboto, "Noto Sans", sans-serif; letter-spacing: normal; }
  .cv-bar a { color: #c4d2da; text-decoration: none; }
  .cv-bar .cv-brand { display: flex; align-items: center; gap: 8px; font-weight: 700; color: #fff; }
  .cv-bar .cv-brand img { width: 20px; height: 20px; display: block; }
  .cv-bar nav { display: flex; align-items: stretch; gap: 2px; }
  .cv-bar nav a { display: flex; align-items: center; padding: 0 10px; border-bottom: 3px solid transparent; border-top: 3px solid transparent; }
  .cv-bar nav a:hover { color: #fff; background: rgba(255, 255, 255, .06); }
  .cv-bar nav a[aria-current=page] { color: #fff; border-bottom-color: #3fb8a8; }
  .cv-bar .cv-who { margin-left: auto; display: flex; align-items: center; gap: 10px; }
  .cv-bar .cv-role { font-size: 12px; padding: 1px 8px; border-radius: 10px; background: #24414e; color: #cfe7e3; }
  .cv-bar form { margin: 0; display: flex; }
  .cv-bar button { font: inherit; padding: 4px 12px; border: 1px solid #58707e; border-radius: 4px; background: transparent; color: #fff; cursor: pointer; }
  .cv-bar button:hover { background: rgba(255, 255, 255, .08); }
  .cv-bar :focus-visible, .cv-skip:focus-visible { outline: 2px solid #f5b942; outline-offset: 2px; }
  .cv-skip { position: fixed; left: -10000px; top: 6px; z-index: 300; padding: 6px 12px; background: #fff; color: #14232b; border-radius: 4px; font: 14px system-ui, sans-serif; }
  .cv-skip:focus { left: 8px; }
`;

const PAGE_STYLE = `
  :root { color-scheme: light; --bg: #f3f5f7; --card: #fff; --fg: #20262c; --muted: #5f6b76; --line: #e2e7ec; --input: #c5ced6;
    --primary: #0f6f64; --bad: #c2362f; --ok: #15803d; --warn: #b45309; --info: #2563eb; }
  * { box-sizing: border-box; }
  body { margin: 0; padding-top: ${BAR_HEIGHT_PX}px; font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "Noto Sans", sans-serif; color: var(--fg); background: var(--bg); }
  main { padding: 20px 24px 40px; max-width: 1440px; }
  main:focus { outline: none; }
  a { color: var(--primary); }
  h1 { font-size: 20px; margin: 0 0 16px; }
  h2 { font-size: 16px; margin: 26px 0 10px; }
  p { margin: 8px 0; }
  :focus-visible { outline: 2px solid #f59e0b; outline-offset: 2px; }
  table { width: 100%; border-collapse: collapse; background: var(--card); border: 1px solid var(--line); }
  th, td { text-align: left; padding: 7px 10px; border-bottom: 1px solid var(--line); vertical-align: top; }
  th { background: #eef1f4; font-weight: 600; white-space: nowrap; }
  td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
  code, pre { font: 12px/1.45 ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; }
  pre { background: var(--card); border: 1px solid var(--line); padding: 10px; overflow: auto; max-height: 420px; white-space: pre-wrap; word-break: break-all; margin: 0; }
  td code.clip { display: inline-block; max-width: 360px; overflow: hidden; text-overflow: ellipsis; white-space: nowrap; vertical-align: bottom; }
  .wrap { overflow-wrap: anywhere; word-break: break-word; }
  form.filters { display: flex; gap: 12px; align-items: end; flex-wrap: wrap; margin-bottom: 14px; padding: 12px; background: var(--card); border: 1px solid var(--line); border-radius: 6px; }
  label { display: flex; flex-direction: column; gap: 4px; font-size: 12px; font-weight: 600; color: var(--muted); }
  label .hint { font-weight: 400; }
  input, select, button, textarea { font: inherit; font-size: 14px; padding: 6px 9px; border: 1px solid var(--input); border-radius: 5px; background: #fff; color: var(--fg); }
  input::placeholder { color: #97a3ad; font-style: italic; }
  button { cursor: pointer; background: var(--primary); color: #fff; border-color: var(--primary); font-weight: 600; }
  button.secondary { background: #fff; color: var(--primary); }
  button.danger { background: var(--bad); border-color: var(--bad); }
  .actions { display: flex; gap: 12px; align-items: end; flex-wrap: wrap; margin: 12px 0; }
  .actions form { display: flex; gap: 10px; align-items: end; margin: 0; }
  .badge { display: inline-block; padding: 1px 8px; border-radius: 10px; font-size: 12px; font-weight: 600; background: #e4e8ec; color: #39424b; white-space: nowrap; }
  .badge.pending, .badge.bad, .badge.open, .badge.dead_lettered, .badge.failed_again, .badge.send_failed { background: #fde8e7; color: var(--bad); }
  .badge.redriven, .badge.ok, .badge.completed, .badge.closed, .badge.done { background: #dcfce7; color: var(--ok); }
  .badge.warn, .badge.half-open, .badge.queued, .badge.rejected { background: #fef3c7; color: var(--warn); }
  .badge.info, .badge.processing { background: #dbeafe; color: var(--info); }
  .notice { padding: 10px 12px; border-radius: 6px; margin-bottom: 14px; background: #dcfce7; border: 1px solid #86efac; }
  .notice.error { background: #fde8e7; border-color: #f6b4b0; }
  .notice.info { background: #e0f2fe; border-color: #93c5fd; }
  .notice.warn { background: #fef3c7; border-color: #fcd34d; }
  .muted { color: var(--muted); }
  .small { font-size: 12px; }
  dl { display: grid; grid-template-columns: max-content 1fr; gap: 5px 18px; background: var(--card); border: 1px solid var(--line); padding: 12px 14px; margin: 0; border-radius: 6px; }
  dt { color: var(--muted); }
  dd { margin: 0; overflow-wrap: anywhere; }
  .card { background: var(--card); border: 1px solid var(--line); border-radius: 6px; padding: 14px 16px; }
  .grid { display: grid; gap: 14px; grid-template-columns: repeat(auto-fill, minmax(240px, 1fr)); }
  .login { max-width: 360px; margin: 80px auto; background: var(--card); border: 1px solid var(--line); padding: 24px; border-radius: 8px; }
  .login form { display: flex; flex-direction: column; gap: 12px; }
  .pager { margin-top: 12px; }
  .sr-only { position: absolute; width: 1px; height: 1px; overflow: hidden; clip: rect(0 0 0 0); white-space: nowrap; }
`;

/** The top bar's sections. */
export type NavKey = 'overview' | 'queues' | 'tenants' | 'dead-letters' | 'orders' | 'search' | 'audit';

const NAV: readonly { key: NavKey; href: string; label: string }[] = [
  { key: 'overview', href: BASE_PATH, label: 'Overview' },
  { key: 'queues', href: `${BOARD_PATH}/`, label: 'Queues' },
  { key: 'tenants', href: `${BASE_PATH}/tenants`, label: 'Tenants' },
  { key: 'dead-letters', href: `${BASE_PATH}/dead-letters`, label: 'Dead letters' },
  { key: 'orders', href: `${BASE_PATH}/orders`, label: 'Orders' },
  { key: 'search', href: `${BASE_PATH}/search`, label: 'Search' },
  { key: 'audit', href: `${BASE_PATH}/audit`, label: 'Audit log' },
];

export interface PageOptions {
  title: string;
  body: Html;
  session?: DashboardSession | undefined;
  /** Which top-bar item is highlighted. */
  current?: NavKey | undefined;
  status?: ContentfulStatusCode;
  headers?: Record<string, string>;
  /** Reload the page every this many seconds (no script: a `<meta http-equiv="refresh">`). */
  refreshSeconds?: number | undefined;
}

/** The hidden anti-CSRF field every state-changing form carries. */
export function csrfField(session: DashboardSession): Html {
  return html`<input type="hidden" name="csrf" value="${session.csrf}" />`;
}

/** UTC, to the second (`precise`: to the millisecond, for moments that happen within one second). */
export function formatDate(d: Date | null | undefined, precise = false): string {
  if (!d) return '—';
  const iso = d.toISOString().replace('T', ' ');
  return precise ? iso : iso.replace(/\.\d+Z$/, 'Z');
}

/** A duration for people: `850 ms`, `42 s`, `3 min 5 s`, `2 h 10 min`. */
export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds) || seconds < 0) return '—';
  if (seconds < 1) return `${Math.round(seconds * 1000)} ms`;
  if (seconds < 60) return `${Math.round(seconds)} s`;
  const s = Math.round(seconds);
  if (s < 3600) return `${Math.floor(s / 60)} min ${s % 60} s`;
  return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
}

/** A `<time>` element: UTC text, machine-readable value. */
export function timeTag(d: Date | null | undefined, precise = false): Html {
  return d ? html`<time datetime="${d.toISOString()}">${formatDate(d, precise)}</time>` : html`—`;
}

/**
 * The shared top bar: Overview, Queues (Bull Board), Tenants, Dead letters, Orders, Audit log, the signed-in
 * operator and Log out (a POST with the session's CSRF token). `skipTo` is the id of the content.
 */
export function topBar(session: DashboardSession, current: NavKey | undefined, skipTo = 'content'): Html {
  return html`<a class="cv-skip" href="#${skipTo}">Skip to content</a>
    <header class="cv-bar" data-testid="top-bar">
      <a class="cv-brand" href="${BASE_PATH}"><img src="${FAVICON_PATH}" alt="" />Conveyor</a>
      <nav aria-label="Console">
        ${NAV.map(
          (n) =>
            html`<a href="${n.href}" ${current === n.key ? html`aria-current="page"` : ''}>${n.label}</a>`,
        )}
      </nav>
      <div class="cv-who">
        <span data-testid="who">${session.user} <span class="cv-role">${session.role}</span></span>
        <form method="post" action="${BASE_PATH}/logout">
          ${csrfField(session)}<button type="submit">Log out</button>
        </form>
      </div>
    </header>`;
}

/** The bar for signed-out pages: the brand only. */
function anonymousBar(): Html {
  return html`<header class="cv-bar">
    <span class="cv-brand"><img src="${FAVICON_PATH}" alt="" />Conveyor</span>
  </header>`;
}

/** A full HTML page with the console's chrome and a script-free Content-Security-Policy. */
export function page(c: Context, options: PageOptions): Response | Promise<Response> {
  const doc = html`<!doctype html>
    <html lang="en">
      <head>
        <meta charset="utf-8" />
        <meta name="viewport" content="width=device-width, initial-scale=1" />
        ${options.refreshSeconds ? html`<meta http-equiv="refresh" content="${options.refreshSeconds}" />` : ''}
        <title>${options.title} · Conveyor</title>
        <link rel="icon" type="image/svg+xml" href="${FAVICON_PATH}" />
        <style>
          ${raw(BAR_STYLE)}${raw(PAGE_STYLE)}
        </style>
      </head>
      <body>
        ${options.session ? topBar(options.session, options.current) : anonymousBar()}
        <main id="content" tabindex="-1">${options.body}</main>
      </body>
    </html>`;
  return c.html(doc, options.status ?? 200, {
    'content-security-policy': PAGE_CSP,
    'cache-control': 'no-store',
    ...options.headers,
  });
}
