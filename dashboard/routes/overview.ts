import { Hono } from 'hono';
import type { DashboardDeps, DashboardEnv } from '../context.ts';
import { page } from '../views/layout.ts';
import { OVERVIEW_REFRESH_SECONDS, overviewView } from '../views/overview.ts';

/** The landing page: is the platform healthy, and where to look if not. Reloads itself. */
export function overviewPages(deps: DashboardDeps): Hono<DashboardEnv> {
  const app = new Hono<DashboardEnv>();
  app.get('/', async (c) =>
    page(c, {
      title: 'Overview',
      session: c.get('session'),
      current: 'overview',
      refreshSeconds: OVERVIEW_REFRESH_SECONDS,
      body: overviewView(await deps.overview.read()),
    }),
  );
  return app;
}
