import type { SearchCursor } from './cursor.ts';
import { timestampOfMicros } from './cursor.ts';
import type { SearchQuery } from './query.ts';
import type { SearchSource } from './sources.ts';
import { isUuid } from '../domain/ids.ts';

/** Statuses a write model holds (the others live in Redis only). */
export const DECIDED_STATUSES = ['completed', 'rejected', 'dead_lettered', 'cancelled'] as const;

/** A decided command as the search's SQL returns it. */
export interface DecidedRow {
  module: string;
  id: string;
  status: string;
  tenant: string | null;
  api_key: string | null;
  subject: string | null;
  correlation_id: string | null;
  error_code: string | null;
  accepted_at: Date;
  accepted_us: number;
  decided_at: Date | null;
}

/** `LIKE` pattern for "starts with `prefix`". */
export const startsWith = (prefix: string) => `${prefix.replace(/[\\%_]/g, (c) => `\\${c}`)}%`;

/**
 * The WHERE clause of one module's table for `q` (parameters appended to `params`), or null when the
 * query can match none of its rows (a status filter of pending states only, a subject that is not a
 * uuid where the module's is). `after`: keyset condition for rows after that cursor in the sort.
 */
export function whereOf(
  src: SearchSource,
  q: SearchQuery,
  params: unknown[],
  after?: SearchCursor,
): string | null {
  // Appended to `params` only when the clause is used: a branch that can match nothing leaves none.
  const own: unknown[] = [];
  const p = (v: unknown) => {
    own.push(v);
    return `$${params.length + own.length}`;
  };
  const conds: string[] = [];
  if (q.status) {
    const decided = q.status.filter((s) => (DECIDED_STATUSES as readonly string[]).includes(s));
    if (decided.length === 0) return null;
    const failedOnly = !!src.failed && q.status.every((s) => src.failed!.statuses.includes(s));
    if (failedOnly) {
      // The failed rows' partial indexes cover these statuses: `|| ''` keeps the planner from also
      // reading the status index (a bitmap over every failed row of the table) to AND with them.
      conds.push(src.failed!.predicate, `(${src.status} || '') = ANY(${p(decided)}::text[])`);
    } else if (decided.length < DECIDED_STATUSES.length) {
      conds.push(`${src.status} = ANY(${p(decided)}::text[])`);
    }
  }
  if (q.tenant !== undefined) conds.push(`${src.tenant} = ${p(q.tenant)}`);
  if (q.apiKey !== undefined) conds.push(`${src.apiKey} = ${p(q.apiKey)}`);
  if (q.subject !== undefined) {
    if (src.subjectIsUuid && !isUuid(q.subject.toLowerCase())) return null;
    conds.push(
      src.subjectIsUuid
        ? `${src.subject} = ${p(q.subject.toLowerCase())}::uuid`
        : `${src.subject} = ${p(q.subject)}`,
    );
  }
  if (q.from) conds.push(`${src.acceptedAt} >= ${p(q.from.toISOString())}::timestamptz`);
  if (q.to) conds.push(`${src.acceptedAt} < ${p(q.to.toISOString())}::timestamptz`);
  if (q.correlationId !== undefined) conds.push(`${src.correlationId} = ${p(q.correlationId)}`);
  if (q.traceId !== undefined) conds.push(`${src.id} = ANY(${src.traceIds(p(q.traceId.toLowerCase()))})`);
  if (q.errorCode !== undefined)
    conds.push(`${src.error} IS NOT NULL`, `${src.error} LIKE ${p(startsWith(q.errorCode))}`);
  if (after) {
    const at = `${p(timestampOfMicros(after.us))}::timestamptz`;
    if (src.module < after.module) conds.push(`${src.acceptedAt} < ${at}`);
    else if (src.module > after.module) conds.push(`${src.acceptedAt} <= ${at}`);
    else
      conds.push(
        `${src.acceptedAt} <= ${at}`,
        `(${src.acceptedAt} < ${at} OR ${src.id} > ${p(after.id)}::uuid)`,
      );
  }
  params.push(...own);
  return conds.length > 0 ? conds.join(' AND ') : 'true';
}

/** One module's matching rows, newest first, at most `limit` (its parameter). */
export function branchSql(src: SearchSource, where: string, limit: string): string {
  return `(SELECT '${src.module}'::text AS module, ${src.id}::text AS id, ${src.status} AS status,
          ${src.tenant} AS tenant, ${src.apiKey} AS api_key, ${src.subject}::text AS subject,
          ${src.correlationId} AS correlation_id, ${src.error} AS error_code,
          ${src.acceptedAt} AS accepted_at,
          (extract(epoch FROM ${src.acceptedAt}) * 1000000)::bigint AS accepted_us,
          ${src.decidedAt} AS decided_at
     FROM ${src.table} WHERE ${where}
    ORDER BY ${src.acceptedAt} DESC, ${src.id} LIMIT ${limit})`;
}

/**
 * A page over every module's table: each branch sorted and limited on its own (an index walk each),
 * then merged in the search's order.
 * @returns null when no module's table can match.
 */
export function pageSql(
  sources: readonly SearchSource[],
  q: SearchQuery,
  limit: number,
  after?: SearchCursor,
): { text: string; values: unknown[] } | null {
  const values: unknown[] = [];
  const branches: string[] = [];
  for (const src of sources) {
    const where = whereOf(src, q, values, after);
    if (where === null) continue;
    values.push(limit);
    branches.push(branchSql(src, where, `$${values.length}`));
  }
  if (branches.length === 0) return null;
  if (branches.length === 1) return { text: branches[0]!, values };
  values.push(limit);
  return {
    text: `SELECT * FROM (${branches.join('\n UNION ALL\n')}) c ORDER BY accepted_at DESC, module, id LIMIT $${values.length}`,
    values,
  };
}

/** The exact number of matching decided commands of one module, or null when none can match. */
export function countSql(src: SearchSource, q: SearchQuery): { text: string; values: unknown[] } | null {
  const values: unknown[] = [];
  const where = whereOf(src, q, values);
  if (where === null) return null;
  return { text: `SELECT count(*)::bigint AS n FROM ${src.table} WHERE ${where}`, values };
}

/** Which of `ids` the module's table holds (decided), for dropping their stale jobs from the pending. */
export function decidedSql(src: SearchSource): string {
  return `SELECT ${src.id}::text AS id FROM ${src.table} WHERE ${src.id} = ANY($1::uuid[])`;
}
