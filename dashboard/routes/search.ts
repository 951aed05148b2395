import type { Queue } from 'bullmq';
import { Hono, type Context } from 'hono';
import { html } from 'hono/html';
import { z } from 'zod';
import { MODULES } from '../../modules/registry.ts';
import { createBulkActions, type BulkActions } from '../../shared/bulk/service.ts';
import type { BulkActionKind } from '../../shared/bulk/selection.ts';
import { createCommandCanceller, type CommandCanceller } from '../../shared/commands/cancel.ts';
import type { Config } from '../../shared/config/config.ts';
import { createPool, type Pool } from '../../shared/db/pool.ts';
import { createReadPools } from '../../shared/db/read-pools.ts';
import { DomainError } from '../../shared/errors/domain.ts';
import { fairTarget } from '../../shared/fairness/fair-queue.ts';
import type { Logger } from '../../shared/observability/logger.ts';
import { createCommandQueue } from '../../shared/queue/command-queue.ts';
import type { Redis } from '../../shared/queue/redis.ts';
import { SearchQuerySchema, type CommandSearch, type SearchQuery } from '../../shared/search/query.ts';
import { createCommandSearch } from '../../shared/search/search.ts';
import { SEARCH_SOURCES } from '../../shared/search/sources.ts';
import { requireAdmin, requireCsrfToken } from '../auth/guard.ts';
import { actorOf, type DashboardEnv } from '../context.ts';
import { page } from '../views/layout.ts';
import {
  BULK_PATH,
  bulkConfirmView,
  bulkHref,
  bulkProgressView,
  filterParams,
  SEARCH_PATH,
  searchView,
  type SearchFilter,
} from '../views/search.ts';

const PAGE_SIZE = 50;
/** A bulk action's page reloads this often while it runs (no script needed). */
const PROGRESS_REFRESH_SECONDS = 2;

/** What the search page acts with. Without a canceller or bulk actions, their buttons are not shown. */
export interface SearchConsole {
  search: CommandSearch;
  /** Whether pending commands (Redis) are searched too. */
  pending: boolean;
  canceller?: CommandCanceller | undefined;
  bulk?: BulkActions | undefined;
  close?(): Promise<void>;
}

/**
 * The search page's backing from a process's runtime: the search on the read replica when one is
 * configured (`DATABASE_READ_URL`) with pending commands from the queues; cancel through the same
 * canceller the API uses (each module's queue and, with fairness, its fair queue); bulk actions through
 * the same service as `/v1/bulk-actions` (the workers' bulk runner does the work).
 * @example const search = createSearchConsole(rt); createDashboardApp(deps, { ..., search }); lifecycle.defer('search', search.close)
 */
export function createSearchConsole(rt: {
  config: Config;
  logger: Logger;
  pool: Pool;
  redis: Redis;
}): SearchConsole {
  const { config, logger, pool, redis } = rt;
  const prefix = config.redis.queuePrefix;
  const replica = config.database.readUrl
    ? createPool({
        ...config.database,
        url: config.database.readUrl,
        readOnly: true,
        applicationName: 'conveyor-console-reads',
      })
    : undefined;
  const reads = createReadPools({
    primary: pool,
    replica,
    onFallback: (_reason, err) => err && logger.warn({ err }, 'read replica failed: reading the primary'),
  });
  const queues = new Map<string, Queue>(
    MODULES.map((m) => [m.name, createCommandQueue(redis, prefix, m.name)]),
  );
  const search = createCommandSearch({ reads, redis, queuePrefix: prefix, queueOf: (m) => queues.get(m) });
  // A bulk selection must see rows as they are now: the primary.
  const primarySearch = createCommandSearch({
    reads: { read: (fn) => fn(pool) },
    redis,
    queuePrefix: prefix,
    queueOf: (m) => queues.get(m),
  });
  return {
    search,
    pending: true,
    canceller: createCommandCanceller({
      pool,
      modules: MODULES,
      queue: (m) => queues.get(m),
      fair: (m) => {
        const q = queues.get(m);
        return q ? fairTarget(config.fairness, m, q.toKey(''))?.queue : undefined;
      },
      redis,
      prefix,
      logger,
    }),
    bulk: createBulkActions({ pool, redis, queuePrefix: prefix, search: primarySearch, modules: MODULES }),
    async close() {
      await search.close();
      await primarySearch.close();
      for (const q of queues.values()) await q.close().catch(() => undefined);
      await replica?.end();
    },
  };
}

const Str = z.string().trim().max(200).catch('');
const FilterInput = z.object({
  module: Str,
  tenant: Str,
  apiKey: Str,
  subject: Str,
  from: Str,
  to: Str,
  correlationId: Str,
  traceId: Str,
  errorCode: Str,
});

/** The filter of a query string (`status` may repeat). Unknown values are kept: the query says what is wrong. */
function filterOf(params: URLSearchParams): SearchFilter {
  const one = Object.fromEntries([...params.entries()].filter(([k]) => k !== 'status'));
  return { ...FilterInput.parse(one), status: params.getAll('status').slice(0, 10) };
}

/** A form's time (`2026-12-01T00:00`, as a datetime-local input sends it) is UTC; an ISO time keeps its offset. */
const utc = (s: string) => (/(Z|[+-]\d\d:?\d\d)$/i.test(s) ? s : `${s}Z`);

/** The search query of a filter, or the reasons it is not one. */
export function queryOf(f: SearchFilter): { query: SearchQuery } | { errors: string[] } {
  const raw: Record<string, unknown> = {};
  for (const k of ['module', 'tenant', 'apiKey', 'subject', 'correlationId', 'traceId', 'errorCode'] as const)
    if (f[k] !== '') raw[k] = f[k];
  if (f.status.length > 0) raw.status = f.status;
  const errors: string[] = [];
  for (const k of ['from', 'to'] as const) {
    if (f[k] === '') continue;
    const at = new Date(utc(f[k]));
    if (Number.isNaN(at.getTime())) errors.push(`${k}: not a date and time (e.g. 2026-12-01T00:00)`);
    else raw[k] = at;
  }
  if (f.module !== '' && !SEARCH_SOURCES.has(f.module))
    errors.push(`module: one of ${[...SEARCH_SOURCES.keys()].join(', ')}`);
  if (f.traceId !== '' && !/^[0-9a-f]{32}$/i.test(f.traceId)) errors.push('trace id: 32 hex digits');
  const parsed = SearchQuerySchema.safeParse(raw);
  if (!parsed.success) errors.push(...parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`));
  return errors.length > 0 ? { errors } : { query: (parsed as { data: SearchQuery }).data };
}

const BulkAction = z.enum(['redrive', 'cancel', 'replay']);
const BulkForm = z.object({
  filter: z.string().max(4_000),
  action: BulkAction,
  token: z.string().min(1).max(1_000),
  count: z.coerce.number().int().min(1),
});

const messageOf = (err: unknown) =>
  err instanceof DomainError ? err.message : 'the action failed; it was logged';

/**
 * The search page: filters over every module's commands, results linking to each command's story, a
 * Cancel button per pending one, and bulk actions on the search (dry run → confirm with the count →
 * progress). Cancel and bulk actions: admins only, with the session's CSRF token, audited as the operator.
 */
export function searchPages(console: SearchConsole): Hono<DashboardEnv> {
  const app = new Hono<DashboardEnv>();
  const modules = [...SEARCH_SOURCES.keys()];

  const show = async (
    c: Context<DashboardEnv>,
    filter: SearchFilter,
    opts: { cursor?: string | undefined; notice?: { kind: 'ok' | 'error' | 'info'; text: string } } = {},
  ) => {
    const session = c.get('session');
    const admin = session.role === 'admin';
    const searched = [...new URL(c.req.url).searchParams.keys()].length > 0 || opts.notice !== undefined;
    const parsed = queryOf(filter);
    let rows = null;
    let nextHref: string | null = null;
    let notice = opts.notice;
    let status: 200 | 400 = 200;
    if ('errors' in parsed) {
      notice = { kind: 'error', text: `Invalid filter — ${parsed.errors.join('; ')}` };
      status = 400;
    } else if (searched) {
      try {
        const result = await console.search.search(parsed.query, {
          limit: PAGE_SIZE,
          ...(opts.cursor ? { cursor: opts.cursor } : {}),
        });
        rows = result.items;
        if (result.nextCursor) {
          const p = filterParams(filter);
          p.set('cursor', result.nextCursor);
          nextHref = `${SEARCH_PATH}?${p.toString()}`;
        }
      } catch (err) {
        if (!(err instanceof DomainError)) throw err;
        notice = { kind: 'error', text: err.message };
        status = 400;
      }
    }
    return page(c, {
      title: 'Search',
      session,
      current: 'search',
      status,
      body: searchView({
        filter,
        modules,
        rows,
        nextHref,
        session,
        notice,
        canCancel: admin && console.canceller !== undefined,
        canBulk: admin && console.bulk !== undefined,
        decidedOnly: !console.pending,
      }),
    });
  };

  app.get('/search', (c) => {
    const params = new URL(c.req.url).searchParams;
    const notice = params.get('notice');
    return show(c, filterOf(params), {
      cursor: params.get('cursor') ?? undefined,
      ...(notice
        ? { notice: { kind: params.get('ok') === '1' ? 'ok' : 'error', text: notice.slice(0, 300) } }
        : {}),
    });
  });

  app.post('/search/:module/:id/cancel', requireAdmin(), requireCsrfToken(), async (c) => {
    const form = await c.req.parseBody();
    const back = new URLSearchParams(typeof form.back === 'string' ? form.back.slice(0, 4_000) : '');
    const { module, id } = c.req.param();
    let ok = false;
    let text: string;
    if (!console.canceller) text = 'this console cannot cancel commands';
    else {
      try {
        const result = await console.canceller.cancel(module, id, actorOf(c));
        ok = true;
        text =
          result.outcome === 'cancelled'
            ? `Cancelled ${module} ${id}.`
            : `${module} ${id} was already cancelled.`;
      } catch (err) {
        if (!(err instanceof DomainError)) throw err;
        text = `Not cancelled: ${messageOf(err)}`;
      }
    }
    c.get('log').info({ module, id, ok }, 'console cancel');
    back.set('notice', text);
    if (ok) back.set('ok', '1');
    return c.redirect(`${SEARCH_PATH}?${back.toString()}`, 303);
  });

  // The dry run: counts what the action would touch, and asks to confirm that count.
  app.get('/search/bulk', requireAdmin(), async (c) => {
    const session = c.get('session');
    const params = new URL(c.req.url).searchParams;
    const filter = filterOf(new URLSearchParams(params.get('filter') ?? ''));
    const action = BulkAction.safeParse(params.get('action'));
    const parsed = queryOf(filter);
    if (!console.bulk || !action.success || 'errors' in parsed)
      return show(c, filter, { notice: { kind: 'error', text: 'invalid bulk action or filter' } });
    try {
      const dry = await console.bulk.dryRun(action.data as BulkActionKind, parsed.query);
      return page(c, {
        title: `Confirm bulk ${action.data}`,
        session,
        current: 'search',
        body: bulkConfirmView({ action: action.data, filter, count: dry.count, token: dry.token, session }),
      });
    } catch (err) {
      if (!(err instanceof DomainError)) throw err;
      const detail =
        'errors' in err && Array.isArray(err.errors)
          ? ` — ${(err.errors as { path: string; message: string }[]).map((e) => `${e.path}: ${e.message}`).join('; ')}`
          : '';
      return show(c, filter, { notice: { kind: 'error', text: `${err.message}${detail}` } });
    }
  });

  app.post('/search/bulk', requireAdmin(), requireCsrfToken(), async (c) => {
    const form = BulkForm.safeParse(await c.req.parseBody());
    if (!form.success || !console.bulk) return c.text('invalid bulk request', 400);
    const filter = filterOf(new URLSearchParams(form.data.filter));
    const parsed = queryOf(filter);
    if ('errors' in parsed) return c.text('invalid bulk request', 400);
    try {
      const started = await console.bulk.start(
        {
          action: form.data.action,
          query: parsed.query,
          confirmCount: form.data.count,
          token: form.data.token,
        },
        actorOf(c),
      );
      c.get('log').info(
        { bulkActionId: started.id, action: started.action, expected: started.expected },
        'bulk action started',
      );
      return c.redirect(bulkHref(started.id), 303);
    } catch (err) {
      if (!(err instanceof DomainError)) throw err;
      return show(c, filter, { notice: { kind: 'error', text: `Not started: ${err.message}` } });
    }
  });

  app.get('/search/bulk/:id', async (c) => {
    const session = c.get('session');
    const id = z.uuid().safeParse(c.req.param('id'));
    const record = id.success && console.bulk ? await console.bulk.get(id.data).catch(() => null) : null;
    if (!record)
      return page(c, {
        title: 'Not found',
        session,
        current: 'search',
        status: 404,
        body: html`<h1>No such bulk action</h1>
          <p><a href="${SEARCH_PATH}">← Search</a></p>`,
      });
    const running = record.status === 'queued' || record.status === 'running';
    return page(c, {
      title: `Bulk ${record.action}`,
      session,
      current: 'search',
      refreshSeconds: running ? PROGRESS_REFRESH_SECONDS : undefined,
      body: bulkProgressView(record),
    });
  });

  return app;
}

export { BULK_PATH };
