import { Hono } from 'hono';
import { z } from 'zod';
import { BASE_PATH, type DashboardDeps, type DashboardEnv } from '../context.ts';
import { auditView } from '../views/audit.ts';
import { page } from '../views/layout.ts';

const PAGE_SIZE = 100;

const AuditQuery = z.object({
  actor: z.string().trim().min(1).max(200).optional().catch(undefined),
  action: z.string().trim().min(1).max(100).optional().catch(undefined),
  before: z.coerce.number().int().positive().optional().catch(undefined),
});

/** The audit log page (admins and viewers alike: seeing who did what is not an action). */
export function auditPages(deps: DashboardDeps): Hono<DashboardEnv> {
  const app = new Hono<DashboardEnv>();
  app.get('/audit', async (c) => {
    const q = AuditQuery.parse(c.req.query());
    const rows = await deps.audit.list({
      limit: PAGE_SIZE + 1,
      ...(q.actor ? { actor: q.actor } : {}),
      ...(q.action ? { action: q.action } : {}),
      ...(q.before ? { beforeId: q.before } : {}),
    });
    const entries = rows.slice(0, PAGE_SIZE);
    const last = entries.at(-1);
    let nextHref: string | null = null;
    if (rows.length > PAGE_SIZE && last) {
      const params = new URLSearchParams();
      if (q.actor) params.set('actor', q.actor);
      if (q.action) params.set('action', q.action);
      params.set('before', String(last.id));
      nextHref = `${BASE_PATH}/audit?${params.toString()}`;
    }
    return page(c, {
      title: 'Audit log',
      session: c.get('session'),
      current: 'audit',
      body: auditView({ entries, filter: q, nextHref }),
    });
  });
  return app;
}
