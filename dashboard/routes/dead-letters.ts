import { Hono, type Context } from 'hono';
import { z } from 'zod';
import { html } from 'hono/html';
import type { ItemResult } from '../../shared/dead-letters/actions.ts';
import { requireAdmin, requireCsrfToken } from '../auth/guard.ts';
import { actorOf, BASE_PATH, type DashboardDeps, type DashboardEnv } from '../context.ts';
import { deadLetterDetailView, deadLetterListView, NOTICES, type NoticeCode } from '../views/dead-letters.ts';
import { page } from '../views/layout.ts';

const PAGE_SIZE = 50;

// Bad query values fall back to defaults: a hand-edited URL shows a page, never a stack.
const ListQuery = z.object({
  status: z.enum(['pending', 'redriven', 'discarded', 'all']).catch('pending'),
  transport: z.enum(['all', 'bullmq', 'kafka', 'rabbitmq']).catch('all'),
  origin: z.string().trim().max(200).optional().catch(undefined),
  orderId: z.string().trim().max(64).optional().catch(undefined),
  cursor: z.string().max(512).optional().catch(undefined),
  notice: z
    .enum(Object.keys(NOTICES) as [NoticeCode, ...NoticeCode[]])
    .optional()
    .catch(undefined),
});

const IdParam = z
  .string()
  .min(1)
  .max(300)
  .regex(/^[A-Za-z0-9._:-]+$/);

function decodeCursor(cursor: string | undefined): { failedAt: string; id: string } | undefined {
  if (!cursor) return undefined;
  try {
    const [failedAt, id] = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8')) as [
      unknown,
      unknown,
    ];
    if (typeof failedAt === 'string' && typeof id === 'string' && !Number.isNaN(Date.parse(failedAt)))
      return { failedAt, id };
  } catch {
    // An invalid cursor shows the first page.
  }
  return undefined;
}

const detailPath = (id: string) => `${BASE_PATH}/dead-letters/${encodeURIComponent(id)}`;

/** The unified dead-letter pages; Redrive and Discard call the same actions as the API. */
export function deadLetterPages(deps: DashboardDeps): Hono<DashboardEnv> {
  const app = new Hono<DashboardEnv>();

  app.get('/dead-letters', async (c) => {
    const q = ListQuery.parse(c.req.query());
    const before = decodeCursor(q.cursor);
    const rows = await deps.deadLetters.list({
      limit: PAGE_SIZE + 1,
      ...(q.status === 'all' ? {} : { status: q.status }),
      ...(q.transport === 'all' ? {} : { transport: q.transport }),
      ...(q.origin ? { origin: q.origin } : {}),
      ...(q.orderId ? { orderId: q.orderId } : {}),
      ...(before ? { before } : {}),
    });
    const shown = rows.slice(0, PAGE_SIZE);
    const last = shown.at(-1);
    let nextHref: string | null = null;
    if (rows.length > PAGE_SIZE && last) {
      const params = new URLSearchParams({ status: q.status, transport: q.transport });
      if (q.origin) params.set('origin', q.origin);
      if (q.orderId) params.set('orderId', q.orderId);
      params.set(
        'cursor',
        Buffer.from(JSON.stringify([last.failedAt.toISOString(), last.id])).toString('base64url'),
      );
      nextHref = `${BASE_PATH}/dead-letters?${params.toString()}`;
    }
    return page(c, {
      title: 'Dead letters',
      session: c.get('session'),
      current: 'dead-letters',
      body: deadLetterListView({ rows: shown, filter: q, nextHref, notice: q.notice }),
    });
  });

  app.get('/dead-letters/:id', async (c) => {
    const id = IdParam.safeParse(c.req.param('id'));
    const dl = id.success ? await deps.deadLetters.get(id.data) : null;
    const session = c.get('session');
    if (!dl) {
      return page(c, {
        title: 'Not found',
        session,
        current: 'dead-letters',
        status: 404,
        body: html`<h1>No such dead letter</h1>
          <p><a href="${BASE_PATH}/dead-letters">← Dead letters</a></p>`,
      });
    }
    const history = await deps.audit.list({ target: dl.id, limit: 20 });
    const notice = ListQuery.shape.notice.parse(c.req.query('notice'));
    return page(c, {
      title: `Dead letter ${dl.id}`,
      session,
      current: 'dead-letters',
      body: deadLetterDetailView({ dl, session, history, notice }),
    });
  });

  // Redrive and Discard: admins only, with the session's CSRF token, then back to the detail page.
  const act =
    (run: (id: string, c: Context<DashboardEnv>) => Promise<ItemResult>) =>
    async (c: Context<DashboardEnv>) => {
      const id = IdParam.safeParse(c.req.param('id'));
      const result = id.success ? await run(id.data, c) : { status: 'not_found' as const };
      if (!id.success || result.status === 'not_found')
        return c.redirect(`${BASE_PATH}/dead-letters?notice=not_found`, 303);
      return c.redirect(`${detailPath(id.data)}?notice=${result.status}`, 303);
    };

  app.post(
    '/dead-letters/:id/redrive',
    requireAdmin(),
    requireCsrfToken(),
    act((id, c) => deps.actions.redrive(id, actorOf(c))),
  );
  app.post(
    '/dead-letters/:id/discard',
    requireAdmin(),
    requireCsrfToken(),
    act(async (id, c) => {
      const form = await c.req.parseBody();
      const reason = typeof form.reason === 'string' ? form.reason.trim().slice(0, 500) : '';
      return deps.actions.discard(id, actorOf(c), reason || undefined);
    }),
  );

  return app;
}
