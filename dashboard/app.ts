import { randomUUID } from 'node:crypto';
import { Hono, type Context } from 'hono';
import { bodyLimit } from 'hono/body-limit';
import { csrf } from 'hono/csrf';
import { html } from 'hono/html';
import { HTTPException } from 'hono/http-exception';
import { secureHeaders } from 'hono/secure-headers';
import { sessionGuard } from './auth/guard.ts';
import type { LoginFailures } from './auth/login-failures.ts';
import { loginRoutes, logoutRoutes } from './auth/routes.ts';
import { asConsolePage, boardApiGuard, type Boards } from './bull-board.ts';
import { BASE_PATH, BOARD_PATH, type DashboardDeps, type DashboardEnv } from './context.ts';
import { auditPages } from './routes/audit.ts';
import { deadLetterPages } from './routes/dead-letters.ts';
import { orderPages } from './routes/orders.ts';
import { overviewPages } from './routes/overview.ts';
import { searchPages, type SearchConsole } from './routes/search.ts';
import { createCommandSearch } from '../shared/search/search.ts';
import { tenantPages } from './routes/tenants.ts';
import { favicon } from './views/favicon.ts';
import { page } from './views/layout.ts';

export interface DashboardAppOptions {
  boards: Boards;
  /** Resolves when Redis and Postgres answer (`/readyz`). */
  ready(): Promise<void>;
  /** Streaks of failed logins per address (audited as the first failure and a summary). */
  loginFailures: LoginFailures;
  /**
   * The Search page's search, cancel and bulk actions (`createSearchConsole(rt)`). Absent: decided
   * commands only, from `deps.pool`, with neither cancel nor bulk actions.
   */
  search?: SearchConsole;
}

/**
 * The most bytes any console request may carry (the login form has its own, smaller limit). Forms
 * and Bull Board's calls are far smaller; anything larger is refused before it is read.
 */
export const CONSOLE_BODY_LIMIT_BYTES = 1_048_576;

/**
 * The operators' console, one app under {@link BASE_PATH} with one top bar: the Overview (landing
 * page), Queues (Bull Board at {@link BOARD_PATH}, admin or read-only by role), Tenants (who waits
 * for a turn in each command queue), the unified dead letters, order stories and the audit log, behind
 * a login. Stateless: sessions live in Redis, so any replica serves any operator.
 * @example const app = createDashboardApp(deps, { boards, ready, loginFailures }); serve({ fetch: app.fetch, port: 3001 });
 */
export function createDashboardApp(deps: DashboardDeps, options: DashboardAppOptions): Hono<DashboardEnv> {
  const app = new Hono<DashboardEnv>();

  app.onError((err, c) => {
    if (err instanceof HTTPException) return err.getResponse();
    (c.get('log') ?? deps.logger).error({ err, path: c.req.path }, 'dashboard request failed');
    if (c.req.path.startsWith(`${BOARD_PATH}/api/`)) return c.json({ error: 'internal error' }, 500);
    return page(c, {
      title: 'Error',
      status: 500,
      body: html`<h1>Something went wrong</h1>
        <p>The error was logged. Try again in a moment.</p>`,
    });
  });

  app.use('*', async (c, next) => {
    const log = deps.logger.child({ requestId: randomUUID() });
    c.set('log', log);
    const started = performance.now();
    await next();
    // Bull Board polls its API every few seconds: those reads are debug noise, everything else is info.
    const level = c.req.method === 'GET' && c.req.path.startsWith(`${BOARD_PATH}/api/`) ? 'debug' : 'info';
    log[level](
      {
        method: c.req.method,
        path: c.req.path,
        status: c.res.status,
        durationMs: Math.round(performance.now() - started),
      },
      'request completed',
    );
  });

  // Before any route, so no handler, guard or proxy (Bull Board) ever reads an unbounded body. The
  // login form has a smaller limit of its own (a chunked one is not buffered up to this one first).
  const consoleLimit = bodyLimit({
    maxSize: CONSOLE_BODY_LIMIT_BYTES,
    onError: (c) => {
      const detail = `The request is over the limit of ${CONSOLE_BODY_LIMIT_BYTES} bytes.`;
      // The rest of the body is not read: the connection cannot be reused.
      const headers = { connection: 'close' };
      if (c.req.path.startsWith(`${BOARD_PATH}/api/`)) return c.json({ error: detail }, 413, headers);
      return page(c, {
        title: 'Too large',
        status: 413,
        headers,
        body: html`<h1>Request too large</h1>
          <p>${detail}</p>`,
      });
    },
  });
  app.use('*', (c, next) => (c.req.path === `${BASE_PATH}/login` ? next() : consoleLimit(c, next)));

  app.get('/healthz', (c) => c.json({ status: 'ok' }));
  app.get('/readyz', async (c) => {
    try {
      await options.ready();
      return c.json({ status: 'ready' });
    } catch {
      return c.json({ status: 'unavailable' }, 503);
    }
  });
  app.get('/', (c) => c.redirect(BASE_PATH, 302));
  app.get('/favicon.ico', (c) => c.redirect(`${BASE_PATH}/favicon.svg`, 301));
  // `/dashboard/` (a typed or remembered URL) is the Overview too.
  app.get(`${BASE_PATH}/`, (c) => c.redirect(BASE_PATH, 301));

  const d = new Hono<DashboardEnv>();
  d.use('*', secureHeaders());
  // Cross-origin form posts (login CSRF included) are refused by Origin / Sec-Fetch-Site.
  d.use('*', csrf());
  d.get('/favicon.svg', favicon);
  // Order matters: the login routes answer before the session guard; everything after it needs a session.
  d.route('/', loginRoutes(deps, { failures: options.loginFailures }));
  d.route('/', logoutRoutes(deps));
  d.use('*', sessionGuard(deps.sessions));
  d.route('/', overviewPages(deps));
  d.route('/', tenantPages(deps));
  d.route('/', deadLetterPages(deps));
  d.route('/', orderPages(deps));
  d.route(
    '/',
    searchPages(
      options.search ?? {
        search: createCommandSearch({
          reads: { read: (fn) => fn(deps.pool) },
          queuePrefix: deps.config.redis.queuePrefix,
        }),
        pending: false,
      },
    ),
  );
  d.route('/', auditPages(deps));
  // Deep links of the form Bull Board uses at the base path (`/queue/<name>`) land on the same view under Queues.
  d.get('/queue/*', (c) => {
    const url = new URL(c.req.url);
    return c.redirect(`${BOARD_PATH}${url.pathname.slice(BASE_PATH.length)}${url.search}`, 301);
  });
  d.use('/queues/api/*', boardApiGuard(deps.audit));
  // Queues: the admin's board, or the read-only one for viewers; its HTML page gets the console's bar.
  const board = async (c: Context<DashboardEnv>) => {
    const session = c.get('session');
    const target = session.role === 'admin' ? options.boards.admin : options.boards.viewer;
    // Bull Board's UI links to its base path with a trailing slash (and "?status=…") but its entry
    // route is the bare base path: serve both, keeping the query.
    let req = c.req.raw;
    if (c.req.path === `${BOARD_PATH}/`) {
      const url = new URL(c.req.url);
      url.pathname = BOARD_PATH;
      req = new Request(url, c.req.raw);
    }
    return asConsolePage(await target.fetch(req, c.env), session);
  };
  d.all('/queues', board);
  d.all('/queues/*', board);
  d.all('*', (c) =>
    page(c, {
      title: 'Not found',
      session: c.get('session'),
      status: 404,
      body: html`<h1>Not found</h1>
        <p>No page here. <a href="${BASE_PATH}">Go to the Overview</a>.</p>`,
    }),
  );
  app.route(BASE_PATH, d);
  return app;
}
