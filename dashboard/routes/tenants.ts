import { Hono } from 'hono';
import type { DashboardDeps, DashboardEnv } from '../context.ts';
import { page } from '../views/layout.ts';
import { TENANTS_REFRESH_SECONDS, tenantsView } from '../views/tenants.ts';

/** The Tenants page (admins and viewers alike: it changes nothing). Reloads itself. */
export function tenantPages(deps: DashboardDeps): Hono<DashboardEnv> {
  const app = new Hono<DashboardEnv>();
  app.get('/tenants', async (c) =>
    page(c, {
      title: 'Tenants',
      session: c.get('session'),
      current: 'tenants',
      refreshSeconds: TENANTS_REFRESH_SECONDS,
      body: tenantsView(await deps.tenants.read()),
    }),
  );
  return app;
}
