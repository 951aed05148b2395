import { randomUUID } from 'node:crypto';
import { AuditActions, insertAudit, type AuditActor } from '../audit/audit-log.ts';
import { withTransaction, type Pool } from '../db/pool.ts';
import { NotFoundError, StateConflictError } from '../errors/domain.ts';
import type { Redis } from '../queue/redis.ts';
import type { CommandSearch, SearchQuery } from '../search/query.ts';
import { assertRunnable, selectionFor, type BulkActionKind, type BulkModules } from './selection.ts';
import { countsOf, createBulkStore, type BulkActionRecord } from './store.ts';
import { canonicalQuery, createBulkTokens } from './token.ts';

/**
 * What an operator does with bulk actions — dry run, start with the confirmed count, look, list,
 * cancel — shared by the API (`/v1/bulk-actions`) and whatever console calls it. The work itself is
 * done by the workers' bulk runner (runner.ts).
 */

export interface DryRun {
  action: BulkActionKind;
  query: SearchQuery;
  count: number;
  /** Binds action, query and count; `start` needs it back with the count. */
  token: string;
}

export interface StartRequest {
  action: BulkActionKind;
  query: SearchQuery;
  confirmCount: number;
  token: string;
  /** Items per second; absent: the runner's default. */
  ratePerSecond?: number | undefined;
}

/** The confirmation no longer holds: a wrong or expired token, or the selection's count changed. */
export class BulkConfirmationError extends StateConflictError {
  constructor(
    readonly count: number,
    reason: 'token' | 'count',
  ) {
    super(
      'bulk.confirmation_mismatch',
      reason === 'token'
        ? `the token does not match this action, query and count, or it expired: run the dry run again (it selects ${count} now)`
        : `the selection counts ${count} now, not the confirmed count: run the dry run again`,
    );
  }
}

export interface BulkActions {
  dryRun(action: BulkActionKind, query: SearchQuery): Promise<DryRun>;
  start(req: StartRequest, who: AuditActor): Promise<BulkActionRecord>;
  get(id: string): Promise<BulkActionRecord>;
  list(limit: number, before?: { createdAt: string; id: string }): Promise<BulkActionRecord[]>;
  cancel(id: string, who: AuditActor): Promise<BulkActionRecord>;
}

export interface BulkActionsDeps {
  pool: Pool;
  /** Holds the tokens' signing key. */
  redis: Redis;
  queuePrefix: string;
  search: CommandSearch;
  /** The registered command modules (the registry's): what a query may name. */
  modules: BulkModules;
  /** How long a dry run's token is valid. @defaultValue 10 minutes */
  tokenTtlMs?: number;
}

/** The exact query as recorded and audited: dates as ISO strings. */
export function queryJson(query: SearchQuery): Record<string, unknown> {
  return Object.fromEntries(JSON.parse(canonicalQuery(query)) as [string, unknown][]);
}

export function createBulkActions(deps: BulkActionsDeps): BulkActions {
  const store = createBulkStore(deps.pool);
  const tokens = createBulkTokens(deps.redis, {
    prefix: deps.queuePrefix,
    ...(deps.tokenTtlMs ? { ttlMs: deps.tokenTtlMs } : {}),
  });
  const count = (action: BulkActionKind, query: SearchQuery) =>
    selectionFor(
      { pool: deps.pool, search: deps.search, modules: deps.modules },
      action,
      query,
      new Date(),
    ).count();

  async function get(id: string): Promise<BulkActionRecord> {
    const found = await store.get(id);
    if (!found) throw new NotFoundError(`no bulk action ${id}`);
    return found;
  }

  return {
    async dryRun(action, query) {
      assertRunnable(action, query, deps.modules);
      const n = await count(action, query);
      return { action, query, count: n, token: await tokens.sign({ action, query, count: n }) };
    },

    async start(req, who) {
      assertRunnable(req.action, req.query, deps.modules);
      const tokenOk = await tokens.verify(req.token, {
        action: req.action,
        query: req.query,
        count: req.confirmCount,
      });
      // Counted as of now: the runner selects as of the same instant, so what it touches is this count
      // unless items leave the selection meanwhile (they are then skipped, never replaced).
      const asOf = new Date();
      const fresh = await selectionFor(
        { pool: deps.pool, search: deps.search, modules: deps.modules },
        req.action,
        req.query,
        asOf,
      ).count();
      if (!tokenOk) throw new BulkConfirmationError(fresh, 'token');
      if (fresh !== req.confirmCount) throw new BulkConfirmationError(fresh, 'count');
      return withTransaction(deps.pool, async (client) => {
        const action = await store.insert(client, {
          id: randomUUID(),
          action: req.action,
          query: req.query,
          asOf,
          expected: fresh,
          ratePerSecond: req.ratePerSecond ?? null,
          createdBy: who,
        });
        await insertAudit(client, {
          ...who,
          action: AuditActions.bulkStart,
          target: action.id,
          detail: {
            bulkAction: req.action,
            query: queryJson(req.query),
            expected: fresh,
            ratePerSecond: req.ratePerSecond ?? null,
          },
        });
        return action;
      });
    },

    get,
    list: (limit, before) => store.list(limit, before),

    async cancel(id, who) {
      return withTransaction(deps.pool, async (client) => {
        const current = await store.get(id, client, true);
        if (!current) throw new NotFoundError(`no bulk action ${id}`);
        if (current.status !== 'queued' && current.status !== 'running') {
          throw new StateConflictError(
            'bulk.finished',
            `bulk action ${id} is already ${current.status}: nothing to cancel`,
          );
        }
        await store.requestCancel(client, id);
        // No live runner holds it (not started yet, or its runner died): it ends here. Otherwise its
        // runner stops after the items in hand and records the final counts.
        const unheld = current.leaseExpiresAt === null || current.leaseExpiresAt.getTime() < Date.now();
        const ended = unheld ? await store.finish(client, id, null, 'cancelled') : null;
        const now = ended ?? (await store.get(id, client))!;
        const detail = { bulkAction: now.action, query: queryJson(now.query), ...countsOf(now) };
        await insertAudit(client, { ...who, action: AuditActions.bulkCancel, target: id, detail });
        if (ended) {
          await insertAudit(client, {
            ...who,
            action: AuditActions.bulkFinish,
            target: id,
            detail: { ...detail, status: 'cancelled' },
          });
        }
        return now;
      });
    },
  };
}
