import { randomUUID } from 'node:crypto';
import { Hono } from 'hono';
import { csrf } from 'hono/csrf';
import { html } from 'hono/html';
import { HTTPException } from 'hono/http-exception';
import { secureHeaders } from 'hono/secure-headers';
import { sessionGuard } from './auth/guard.ts';
import { loginRoutes, logoutRoutes } from './auth/routes.ts';
import { boardApiGuard, type Boards } from './bull-board.ts';
import { BASE_PATH, type DashboardDeps, type DashboardEnv } from './context.ts';
import { auditPages } from './routes/audit.ts';
import { deadLetterPages } from './routes/dead-letters.ts';
import { page } from './views/layout.ts';

export interface DashboardAppOptions {
  boards: Boards;
  /** Resolves when Redis and Postgres answer (`/readyz`). */
  ready(): Promise<void>;
}

/**
 * The operators' dashboard: login, Bull Board (admin or read-only by role), the unified dead letters
 * and the audit log, all under {@link BASE_PATH}. Stateless: sessions live in Redis, so any replica
 * serves any operator.
 * @example const app = createDashboardApp(deps, { boards, ready }); serve({ fetch: app.fetch, port: 3001 });
 */
export function createDashboardApp(deps: DashboardDeps, options: DashboardAppOptions): Hono<DashboardEnv> {
  const app = new Hono<DashboardEnv>();

  app.onError((err, c) => {
    if (err instanceof HTTPException) return err.getResponse();
    (c.get('log') ?? deps.logger).error({ err, path: c.req.path }, 'dashboard request failed');
    if (c.req.path.startsWith(`${BASE_PATH}/api/`)) return c.json({ error: 'internal error' }, 500);
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
    const level = c.req.method === 'GET' && c.req.path.startsWith(`${BASE_PATH}/api/`) ? 'debug' : 'info';
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

  const d = new Hono<DashboardEnv>();
  d.use('*', secureHeaders());
  // Cross-origin form posts (login CSRF included) are refused by Origin / Sec-Fetch-Site.
  d.use('*', csrf());
  // Order matters: the login routes answer before the session guard; everything after it needs a session.
  d.route('/', loginRoutes(deps));
  d.route('/', logoutRoutes(deps));
  d.use('*', sessionGuard(deps.sessions));
  d.route('/', deadLetterPages(deps));
  d.route('/', auditPages(deps));
  d.use('/api/*', boardApiGuard(deps.audit));
  // Everything else is Bull Board: the admin's board, or the read-only one for viewers.
  d.all('*', (c) => {
    const board = c.get('session').role === 'admin' ? options.boards.admin : options.boards.viewer;
    // Bull Board's UI links to "/dashboard/" (and "/dashboard/?status=…") but its entry route is the bare
    // base path: serve both, keeping the query.
    if (c.req.path === `${BASE_PATH}/`) {
      const url = new URL(c.req.url);
      url.pathname = BASE_PATH;
      return board.fetch(new Request(url, c.req.raw), c.env);
    }
    return board.fetch(c.req.raw, c.env);
  });
  app.route(BASE_PATH, d);
  return app;
}
