import { z } from 'zod';
import type { Pool } from '../db/pool.ts';
import type { ModuleDefinition } from '../modules/module.ts';
import { ValidationError, type FieldError } from '../errors/domain.ts';
import type { CommandSearch, CommandStatus, SearchQuery } from '../search/query.ts';

/**
 * What a bulk action selects for a query, the same way for its dry run (the count) and its run (the
 * frozen snapshot, page by page): pending command dead letters for a redrive, commands not yet decided
 * for a cancel, rejected or dead-lettered commands for a replay.
 */

export const BulkActionKind = z.enum(['redrive', 'cancel', 'replay']);
export type BulkActionKind = z.infer<typeof BulkActionKind>;

/** One selected item: a command of a module (cancel), or a dead letter of a module's commands (redrive). */
export interface SelectedItem {
  module: string;
  id: string;
}

export interface SelectionPage {
  items: SelectedItem[];
  /** Where the next page starts; null after the last page. */
  nextCursor: string | null;
}

export interface Selection {
  count(): Promise<number>;
  page(cursor: string | null, limit: number): Promise<SelectionPage>;
}

/** The registered command modules (the registry's, from the composition root): what a query may name. */
export type BulkModules = readonly Pick<ModuleDefinition, 'name'>[];

export interface SelectionDeps {
  /** The primary: a selection must see the rows as they are now. */
  pool: Pool;
  /** The registered modules: a redrive selects their dead letters. */
  modules: BulkModules;
  /** Command search (shared/search): the selection of a cancel. */
  search: CommandSearch;
}

/** The filters a redrive understands: what a dead letter records of its command. */
const REDRIVE_FILTERS = new Set<keyof SearchQuery>([
  'module',
  'status',
  'subject',
  'correlationId',
  'from',
  'to',
]);
/** States a cancel can act on. */
const CANCELLABLE: readonly CommandStatus[] = ['queued', 'processing'];
/** States a replay can act on: decided, and not done. */
export const REPLAYABLE: readonly CommandStatus[] = ['rejected', 'dead_lettered'];

/**
 * Field errors of `query` for `action`, empty when it can run: a module must be registered; a redrive
 * selects dead letters, so only the filters a dead letter records (module, subject, correlation id, the
 * time it failed) and `status` absent or `dead_lettered`; a cancel selects commands not yet decided;
 * a replay selects rejected or dead-lettered commands.
 */
export function queryErrors(action: BulkActionKind, query: SearchQuery, modules: BulkModules): FieldError[] {
  const errors: FieldError[] = [];
  if (query.module !== undefined && !modules.some((m) => m.name === query.module)) {
    errors.push({ path: 'query.module', message: `no module ${query.module}` });
  }
  if (action === 'replay' && query.status?.some((s) => !REPLAYABLE.includes(s))) {
    errors.push({
      path: 'query.status',
      message: `a replay acts on ${REPLAYABLE.join(' or ')} commands only`,
    });
  }
  if (action === 'redrive') {
    for (const key of Object.keys(query) as (keyof SearchQuery)[]) {
      if (query[key] !== undefined && !REDRIVE_FILTERS.has(key)) {
        errors.push({
          path: `query.${key}`,
          message: 'a redrive selects dead letters, which do not record it',
        });
      }
    }
    if (query.status && query.status.some((s) => s !== 'dead_lettered')) {
      errors.push({ path: 'query.status', message: 'a redrive selects dead_lettered commands only' });
    }
  }
  if (action === 'cancel' && query.status?.some((s) => !CANCELLABLE.includes(s))) {
    errors.push({
      path: 'query.status',
      message: `a cancel acts on ${CANCELLABLE.join(' or ')} commands only`,
    });
  }
  return errors;
}

/** Throws a {@link ValidationError} (400) when {@link queryErrors} finds any. */
export function assertRunnable(action: BulkActionKind, query: SearchQuery, modules: BulkModules): void {
  const errors = queryErrors(action, query, modules);
  if (errors.length > 0) throw new ValidationError(`this query cannot be used for a bulk ${action}`, errors);
}

const earlier = (a: Date | undefined, b: Date): Date => (a && a < b ? a : b);

/**
 * The selection of `action` for `query` as of `asOf`: nothing accepted (a cancel) or failed (a redrive)
 * at or after `asOf` is part of it, so the items posted or failing while the action runs are not.
 */
export function selectionFor(
  deps: SelectionDeps,
  action: BulkActionKind,
  query: SearchQuery,
  asOf: Date,
): Selection {
  assertRunnable(action, query, deps.modules);
  return action === 'redrive'
    ? deadLetterSelection(deps.pool, deps.modules, query, asOf)
    : commandSelection(deps.search, query, asOf, action === 'replay' ? REPLAYABLE : CANCELLABLE);
}

function commandSelection(
  search: CommandSearch,
  query: SearchQuery,
  asOf: Date,
  statuses: readonly CommandStatus[],
): Selection {
  const q: SearchQuery = { ...query, status: query.status ?? [...statuses], to: earlier(query.to, asOf) };
  return {
    count: () => search.count(q),
    async page(cursor, limit) {
      const page = await search.search(q, { ...(cursor ? { cursor } : {}), limit });
      return { items: page.items.map((c) => ({ module: c.module, id: c.id })), nextCursor: page.nextCursor };
    },
  };
}

// Pending command dead letters of registered modules (a command's dead letter has its module's queue,
// named after the module, as its origin), oldest failure first. `from`/`to` are on the time it failed.
const DEAD_LETTER_WHERE = `
  status = 'pending' AND kind = 'command' AND origin = ANY($1::text[])
  AND ($2::text IS NULL OR subject_id = $2) AND ($3::text IS NULL OR correlation_id = $3)
  AND ($4::timestamptz IS NULL OR failed_at >= $4) AND failed_at < $5`;

function deadLetterSelection(pool: Pool, modules: BulkModules, query: SearchQuery, asOf: Date): Selection {
  const origins = query.module ? [query.module] : modules.map((m) => m.name);
  const params = [
    origins,
    query.subject ?? null,
    query.correlationId ?? null,
    query.from ?? null,
    earlier(query.to, asOf),
  ];
  return {
    async count() {
      const { rows } = await pool.query<{ n: number }>(
        `SELECT count(*)::int AS n FROM dead_letters WHERE ${DEAD_LETTER_WHERE}`,
        params,
      );
      return rows[0]?.n ?? 0;
    },
    async page(cursor, limit) {
      // The cursor keeps failed_at as Postgres prints it: microseconds, which a JS Date would lose.
      const after = cursor
        ? (JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8')) as [string, string])
        : null;
      const { rows } = await pool.query<{ id: string; origin: string; failed_at: string }>(
        `SELECT id, origin, failed_at::text AS failed_at FROM dead_letters
          WHERE ${DEAD_LETTER_WHERE} AND ($6::timestamptz IS NULL OR (failed_at, id) > ($6::timestamptz, $7::text))
          ORDER BY failed_at, id LIMIT $8`,
        [...params, after?.[0] ?? null, after?.[1] ?? null, limit],
      );
      const last = rows.at(-1);
      return {
        items: rows.map((r) => ({ module: r.origin, id: r.id })),
        nextCursor:
          rows.length === limit && last
            ? Buffer.from(JSON.stringify([last.failed_at, last.id])).toString('base64url')
            : null,
      };
    },
  };
}
