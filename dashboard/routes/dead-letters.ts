import { Hono, type Context } from 'hono';
import { html } from 'hono/html';
import { z } from 'zod';
import type { ItemResult } from '../../shared/dead-letters/actions.ts';
import { requireAdmin, requireCsrfToken } from '../auth/guard.ts';
import { actorOf, BASE_PATH, type DashboardDeps, type DashboardEnv } from '../context.ts';
import { BULK_MAX, previewSelection, selectPending, type BulkSelection } from '../dead-letters/bulk.sql.ts';
import type { RedriveOutcome } from '../dead-letters/outcome.ts';
import {
  bulkConfirmView,
  deadLetterDetailView,
  deadLetterListView,
  detailHref,
  NOTICES,
  type BulkReport,
  type NoticeCode,
} from '../views/dead-letters.ts';
import { page } from '../views/layout.ts';

const PAGE_SIZE = 50;
/** While a redrive's outcome is still open, its pages reload this often (no script needed). */
const OUTCOME_REFRESH_SECONDS = 2;
/** …for this long after the redrive; an outcome still open by then is shown as is. */
const OUTCOME_WATCH_MS = 5 * 60_000;
/** Discards run a few at a time, like the shared bulk redrive. */
const DISCARD_CONCURRENCY = 8;

const count = z.coerce.number().int().min(0).max(BULK_MAX).optional().catch(undefined);

// Bad query values fall back to defaults: a hand-edited URL shows a page, never a stack.
const FilterQuery = z.object({
  transport: z.enum(['all', 'bullmq', 'kafka', 'rabbitmq', 'sqs']).catch('all'),
  origin: z.string().trim().min(1).max(200).optional().catch(undefined),
  subjectId: z.string().trim().min(1).max(64).optional().catch(undefined),
});
/** `?orderId=` (links and bookmarks from before dead letters named a subject) reads as `?subjectId=`. */
function legacySubject(query: Record<string, string>): Record<string, string> {
  const { orderId, ...rest } = query;
  return orderId && !rest.subjectId ? { ...rest, subjectId: orderId } : rest;
}
const NoticeParam = z
  .enum(Object.keys(NOTICES) as [NoticeCode, ...NoticeCode[]])
  .optional()
  .catch(undefined);
const ListQuery = FilterQuery.extend({
  notice: NoticeParam,
  status: z.enum(['pending', 'redriven', 'discarded', 'all']).catch('pending'),
  cursor: z.string().max(512).optional().catch(undefined),
  bulk: z.enum(['redrive', 'discard']).optional().catch(undefined),
  done: count,
  skipped: count,
  failed: count,
});
const BulkQuery = FilterQuery.extend({ action: z.enum(['redrive', 'discard']).catch('redrive') });
const BulkForm = FilterQuery.extend({
  action: z.enum(['redrive', 'discard']),
  count: z.coerce.number().int().min(1).max(BULK_MAX),
  through: z.string().min(1).max(512),
  reason: z.string().trim().max(500).optional(),
});

const IdParam = z
  .string()
  .min(1)
  .max(300)
  .regex(/^[A-Za-z0-9._:-]+$/);

/** Keyset cursors and the bulk bound: `[failedAt, id]` as base64url JSON. */
function encodeCursor(failedAt: string, id: string): string {
  return Buffer.from(JSON.stringify([failedAt, id])).toString('base64url');
}
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

const transportOf = (t: z.infer<typeof FilterQuery>['transport']) => (t === 'all' ? undefined : t);

/** An outcome still open (queued again) shortly after its redrive: worth a reload. */
function watching(outcomes: Iterable<RedriveOutcome>, now = Date.now()): boolean {
  for (const o of outcomes)
    if (o.kind === 'queued' && now - o.redrivenAt.getTime() < OUTCOME_WATCH_MS) return true;
  return false;
}

/**
 * The unified dead-letter pages: list (with each redrive's outcome), detail, Redrive and Discard (the
 * same actions as the API), and bulk redrive or discard of the list's filtered selection after a
 * confirmation that states how many.
 */
export function deadLetterPages(deps: DashboardDeps): Hono<DashboardEnv> {
  const app = new Hono<DashboardEnv>();

  app.get('/dead-letters', async (c) => {
    const q = ListQuery.parse(legacySubject(c.req.query()));
    const before = decodeCursor(q.cursor);
    const rows = await deps.deadLetters.list({
      limit: PAGE_SIZE + 1,
      ...(q.status === 'all' ? {} : { status: q.status }),
      ...(q.transport === 'all' ? {} : { transport: q.transport }),
      ...(q.origin ? { origin: q.origin } : {}),
      ...(q.subjectId ? { subjectId: q.subjectId } : {}),
      ...(before ? { before } : {}),
    });
    const shown = rows.slice(0, PAGE_SIZE);
    const outcomes = await deps.outcomes.of(shown);
    const last = shown.at(-1);
    let nextHref: string | null = null;
    if (rows.length > PAGE_SIZE && last) {
      const params = new URLSearchParams({ status: q.status, transport: q.transport });
      if (q.origin) params.set('origin', q.origin);
      if (q.subjectId) params.set('subjectId', q.subjectId);
      params.set('cursor', encodeCursor(last.failedAt.toISOString(), last.id));
      nextHref = `${BASE_PATH}/dead-letters?${params.toString()}`;
    }
    const bulk: BulkReport | undefined = q.bulk
      ? { action: q.bulk, done: q.done ?? 0, skipped: q.skipped ?? 0, failed: q.failed ?? 0 }
      : undefined;
    return page(c, {
      title: 'Dead letters',
      session: c.get('session'),
      current: 'dead-letters',
      refreshSeconds: watching(outcomes.values()) ? OUTCOME_REFRESH_SECONDS : undefined,
      body: deadLetterListView({
        rows: shown,
        outcomes,
        filter: q,
        session: c.get('session'),
        nextHref,
        bulk,
        notice: q.notice,
      }),
    });
  });

  // Registered before `/dead-letters/:id`, which would otherwise take "bulk" for an id.
  app.get('/dead-letters/bulk', requireAdmin(), async (c) => {
    const q = BulkQuery.parse(legacySubject(c.req.query()));
    const selection: BulkSelection = {
      transport: transportOf(q.transport),
      origin: q.origin,
      subjectId: q.subjectId,
    };
    const preview = await previewSelection(deps.pool, selection);
    return page(c, {
      title: q.action === 'redrive' ? 'Confirm bulk redrive' : 'Confirm bulk discard',
      session: c.get('session'),
      current: 'dead-letters',
      body: bulkConfirmView({
        action: q.action,
        filter: { ...q, status: 'pending' },
        count: preview.count,
        more: preview.more,
        through: preview.newest
          ? {
              token: encodeCursor(preview.newest.failedAt, preview.newest.id),
              failedAt: preview.newest.failedAt,
            }
          : null,
        session: c.get('session'),
      }),
    });
  });

  app.post('/dead-letters/bulk', requireAdmin(), requireCsrfToken(), async (c) => {
    const form = BulkForm.safeParse(await c.req.parseBody());
    const through = form.success ? decodeCursor(form.data.through) : undefined;
    if (!form.success || !through) return c.text('invalid bulk request', 400);
    const f = form.data;
    const who = actorOf(c);
    const ids = (
      await selectPending(deps.pool, {
        transport: transportOf(f.transport),
        origin: f.origin,
        subjectId: f.subjectId,
        through,
      })
    ).slice(0, f.count);
    const counts = { done: 0, skipped: 0, failed: 0 };
    const tally = (r: ItemResult) => {
      if (r.status === 'redriven' || r.status === 'discarded') counts.done++;
      else if (r.status === 'failed') counts.failed++;
      else counts.skipped++;
    };
    if (f.action === 'redrive') {
      if (ids.length > 0) {
        const { results } = await deps.actions.redriveMany({ ids, limit: ids.length }, who);
        results.forEach(tally);
      }
    } else {
      let next = 0;
      const lane = async () => {
        while (next < ids.length) tally(await deps.actions.discard(ids[next++]!, who, f.reason || undefined));
      };
      await Promise.all(Array.from({ length: Math.min(DISCARD_CONCURRENCY, ids.length) }, lane));
      await deps.audit.record({
        ...who,
        action: 'dead_letter.discard_bulk',
        target: null,
        detail: {
          filter: { transport: f.transport, origin: f.origin ?? null, subjectId: f.subjectId ?? null },
          confirmed: f.count,
          counts,
          ...(f.reason ? { reason: f.reason } : {}),
        },
      });
    }
    c.get('log').info({ action: f.action, confirmed: f.count, ...counts }, 'bulk dead-letter action');
    // Back to the same selection, every status: the rows just handled show what happened to them.
    const params = new URLSearchParams({ status: 'all', transport: f.transport });
    if (f.origin) params.set('origin', f.origin);
    if (f.subjectId) params.set('subjectId', f.subjectId);
    params.set('bulk', f.action);
    for (const [k, v] of Object.entries(counts)) params.set(k, String(v));
    return c.redirect(`${BASE_PATH}/dead-letters?${params.toString()}`, 303);
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
    const [history, outcomes] = await Promise.all([
      deps.audit.list({ target: dl.id, limit: 20 }),
      deps.outcomes.of([dl]),
    ]);
    const outcome = outcomes.get(dl.id) ?? { kind: 'never' as const };
    return page(c, {
      title: `Dead letter ${dl.id}`,
      session,
      current: 'dead-letters',
      refreshSeconds: watching([outcome]) ? OUTCOME_REFRESH_SECONDS : undefined,
      body: deadLetterDetailView({
        dl,
        outcome,
        session,
        history,
        notice: NoticeParam.parse(c.req.query('notice')),
      }),
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
      const notice: NoticeCode =
        result.status === 'redriven'
          ? 'redrive_sent'
          : result.status === 'discarded'
            ? 'discarded'
            : result.status === 'failed'
              ? 'failed'
              : 'not_pending';
      return c.redirect(`${detailHref(id.data)}?notice=${notice}`, 303);
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
