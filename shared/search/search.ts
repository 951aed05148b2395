import { Queue, type Job } from 'bullmq';
import type { Pool } from '../db/pool.ts';
import { ValidationError } from '../errors/domain.ts';
import { lastErrorOf } from '../queue/job-delivery.ts';
import { queueOptions } from '../queue/names.ts';
import type { Redis } from '../queue/redis.ts';
import { compareKeys, decodeCursor, encodeCursor, type SearchCursor } from './cursor.ts';
import type { CommandSearch, CommandStatus, CommandSummary, SearchPage, SearchQuery } from './query.ts';
import { countSql, decidedSql, pageSql, type DecidedRow } from './search.sql.ts';
import { SEARCH_SOURCES, type SearchSource } from './sources.ts';

/** Page sizes the search answers. */
export const SEARCH_MAX_LIMIT = 200;

/** BullMQ states of a pending command and the status each reads as. */
const PENDING_STATES = {
  waiting: 'queued',
  prioritized: 'queued',
  // Retries waiting for their backoff, and jobs fairness holds for their tenant's turn.
  delayed: 'queued',
  'waiting-children': 'queued',
  active: 'processing',
} as const satisfies Record<string, CommandStatus>;
type PendingState = keyof typeof PENDING_STATES;

export interface CommandSearchDeps {
  /** Where decided commands are read: the read replica when configured (`ReadPools.read`). */
  reads: { read<T>(fn: (pool: Pool) => Promise<T>): Promise<T> };
  /** The queues' connection, for pending commands; absent: decided commands only. */
  redis?: Redis | undefined;
  queuePrefix: string;
  /** A module's command queue when the caller has it open already (the API's); else one is opened on `redis`. */
  queueOf?: (module: string) => Queue | undefined;
  /** @defaultValue every module {@link SEARCH_SOURCES} knows */
  sources?: ReadonlyMap<string, SearchSource>;
  /**
   * Jobs read per BullMQ state per module for the pending part (oldest first). Pending commands beyond
   * it are not found by the search (nor counted) until the queue drains below it. @defaultValue 5000
   */
  pendingScanMax?: number;
}

/** What a caller may see: a producer's search is limited to the modules its key may read. */
export interface SearchAccess {
  modules?: readonly string[];
}

export interface CommandSearchService extends CommandSearch {
  search(
    q: SearchQuery,
    page: { cursor?: string; limit: number },
    access?: SearchAccess,
  ): Promise<SearchPage>;
  count(q: SearchQuery, access?: SearchAccess): Promise<number>;
  /** The modules it searches. */
  readonly modules: readonly string[];
  close(): Promise<void>;
}

interface Candidate extends CommandSummary {
  key: SearchCursor;
}

const trimmed = (s: string | undefined) => (s === undefined || s === '' ? undefined : s);

/** Drops empty strings (an empty form field is no filter). */
export function normalizeQuery(q: SearchQuery): SearchQuery {
  const out: SearchQuery = { ...q };
  for (const k of [
    'module',
    'tenant',
    'apiKey',
    'subject',
    'correlationId',
    'traceId',
    'errorCode',
  ] as const) {
    const v = trimmed(out[k]);
    if (v === undefined) delete out[k];
    else out[k] = v;
  }
  if (out.status?.length === 0) delete out.status;
  return out;
}

function matchesPending(c: CommandSummary, q: SearchQuery): boolean {
  if (q.status && !q.status.includes(c.status)) return false;
  if (q.tenant !== undefined && c.tenant !== q.tenant) return false;
  if (q.apiKey !== undefined && c.apiKey !== q.apiKey) return false;
  if (q.subject !== undefined && c.subject?.toLowerCase() !== q.subject.toLowerCase()) return false;
  if (q.correlationId !== undefined && c.correlationId !== q.correlationId) return false;
  // A pending command's trace lives in its job's span only: no outbox event names it yet.
  if (q.traceId !== undefined) return false;
  if (q.errorCode !== undefined && !(c.errorCode ?? '').startsWith(q.errorCode)) return false;
  const at = c.acceptedAt ? Date.parse(c.acceptedAt) : NaN;
  if (q.from && !(at >= q.from.getTime())) return false;
  if (q.to && !(at < q.to.getTime())) return false;
  return true;
}

function summaryOf(row: DecidedRow): Candidate {
  return {
    module: row.module,
    id: row.id,
    status: row.status as CommandStatus,
    tenant: row.tenant,
    apiKey: row.api_key,
    subject: row.subject,
    correlationId: row.correlation_id,
    traceId: null,
    errorCode: row.error_code,
    acceptedAt: row.accepted_at.toISOString(),
    decidedAt: row.decided_at?.toISOString() ?? null,
    key: { us: Number(row.accepted_us), module: row.module, id: row.id },
  };
}

/**
 * Searches every module's commands: decided ones in the write models (on the read replica when one
 * is configured), pending ones (`queued`, `processing`) in the modules' queues, merged in one order —
 * accepted_at DESC, module, id — with keyset cursors, so a page never repeats or skips a command that
 * existed when the first page was read, however many are decided or accepted meanwhile.
 *
 * Pending commands are read from Redis (waiting, prioritized, delayed — retries and jobs fairness
 * holds — and active), at most `pendingScanMax` per state and module, filtered in memory; a job whose
 * command is already in the write model (decided while the search ran) counts as decided only.
 */
export function createCommandSearch(deps: CommandSearchDeps): CommandSearchService {
  const sources = deps.sources ?? SEARCH_SOURCES;
  const scanMax = deps.pendingScanMax ?? 5_000;
  const queues = new Map<string, Queue>();
  const queueOf = (module: string, redis: Redis): Queue => {
    let q = deps.queueOf?.(module) ?? queues.get(module);
    if (!q) {
      q = new Queue(module, queueOptions(redis, deps.queuePrefix, module));
      queues.set(module, q);
    }
    return q;
  };

  function sourcesFor(q: SearchQuery, access?: SearchAccess): SearchSource[] {
    if (q.module !== undefined && !sources.has(q.module)) {
      throw new ValidationError('unknown module', [
        { path: 'module', message: `one of: ${[...sources.keys()].join(', ')}` },
      ]);
    }
    return [...sources.values()].filter(
      (s) =>
        (q.module === undefined || s.module === q.module) &&
        (!access?.modules || access.modules.includes(s.module)),
    );
  }

  const wantsPending = (q: SearchQuery) =>
    !!deps.redis && (!q.status || q.status.includes('queued') || q.status.includes('processing'));

  /** Matching pending commands of `srcs`, not yet in their write models. */
  async function pending(srcs: readonly SearchSource[], q: SearchQuery, pool: Pool): Promise<Candidate[]> {
    const redis = deps.redis;
    if (!redis || !wantsPending(q)) return [];
    const states = (Object.keys(PENDING_STATES) as PendingState[]).filter(
      (s) => !q.status || q.status.includes(PENDING_STATES[s]),
    );
    const perModule = await Promise.all(
      srcs.map(async (src) => {
        const queue = queueOf(src.module, redis);
        const byId = new Map<string, Candidate>();
        for (const state of states) {
          const jobs: Job[] = await queue.getJobs([state], 0, scanMax - 1, true);
          for (const job of jobs) {
            if (!job) continue;
            const fields = src.pending(job.data, job.id);
            if (!fields) continue;
            const acceptedAt = fields.acceptedAt ?? new Date(job.timestamp).toISOString();
            const ms = Date.parse(acceptedAt);
            if (Number.isNaN(ms)) continue;
            const c: Candidate = {
              module: src.module,
              ...fields,
              acceptedAt,
              status: PENDING_STATES[state],
              traceId: null,
              errorCode: lastErrorOf(job),
              decidedAt: null,
              key: { us: ms * 1_000, module: src.module, id: fields.id },
            };
            // Read state by state, a job moving on may show twice: the later state wins.
            if (matchesPending(c, q)) byId.set(c.id, c);
            else byId.delete(c.id);
          }
        }
        const found = [...byId.values()];
        if (found.length === 0) return [];
        const { rows } = await pool.query<{ id: string }>(decidedSql(src), [found.map((c) => c.id)]);
        const decided = new Set(rows.map((r) => r.id));
        return found.filter((c) => !decided.has(c.id));
      }),
    );
    return perModule.flat();
  }

  async function withTraces(pool: Pool, items: Candidate[]): Promise<void> {
    const byModule = new Map<string, Candidate[]>();
    for (const c of items)
      if (c.decidedAt !== null) byModule.set(c.module, [...(byModule.get(c.module) ?? []), c]);
    await Promise.all(
      [...byModule].map(async ([module, rows]) => {
        const src = sources.get(module)!;
        const { rows: traces } = await pool.query<{ id: string; trace_id: string | null }>(src.traceOf, [
          rows.map((r) => r.id),
        ]);
        const byId = new Map(traces.map((t) => [t.id, t.trace_id]));
        for (const r of rows) r.traceId = byId.get(r.id) ?? null;
      }),
    );
  }

  return {
    modules: [...sources.keys()],
    async search(raw, page, access) {
      const q = normalizeQuery(raw);
      const limit = Math.min(Math.max(1, Math.trunc(page.limit)), SEARCH_MAX_LIMIT);
      const after = page.cursor ? decodeCursor(page.cursor) : undefined;
      const srcs = sourcesFor(q, access);
      return deps.reads.read(async (pool) => {
        const sql = pageSql(srcs, q, limit + 1, after);
        const [decided, queued] = await Promise.all([
          sql ? pool.query<DecidedRow>(sql.text, sql.values).then((r) => r.rows.map(summaryOf)) : [],
          pending(srcs, q, pool),
        ]);
        const merged = [...decided, ...queued.filter((c) => !after || compareKeys(c.key, after) > 0)].sort(
          (a, b) => compareKeys(a.key, b.key),
        );
        const items = merged.slice(0, limit);
        await withTraces(pool, items);
        const last = items.at(-1);
        return {
          items: items.map(({ key: _key, ...summary }) => summary),
          nextCursor: merged.length > limit && last ? encodeCursor(last.key) : null,
        };
      });
    },
    async count(raw, access) {
      const q = normalizeQuery(raw);
      const srcs = sourcesFor(q, access);
      return deps.reads.read(async (pool) => {
        const counts = await Promise.all(
          srcs.map(async (src) => {
            const sql = countSql(src, q);
            if (!sql) return 0;
            const { rows } = await pool.query<{ n: number }>(sql.text, sql.values);
            return Number(rows[0]?.n ?? 0);
          }),
        );
        const queued = await pending(srcs, q, pool);
        return counts.reduce((a, b) => a + b, 0) + queued.length;
      });
    },
    async close() {
      for (const q of queues.values()) await q.close().catch(() => undefined);
      queues.clear();
    },
  };
}
