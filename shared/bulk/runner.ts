import { randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
import { AuditActions, insertAudit } from '../audit/audit-log.ts';
import type { DeadLetterActions } from '../dead-letters/actions.ts';
import { withTransaction, type Pool } from '../db/pool.ts';
import type { Logger } from '../observability/logger.ts';
import type { CommandSearch } from '../search/query.ts';
import {
  cancelItems,
  redriveChunks,
  redriveItems,
  settle,
  type ChunkExecutor,
  type ItemCanceller,
  type ItemExecutor,
  type RedriveRecovery,
} from './items.ts';
import { createTokenBucket } from './rate.ts';
import { selectionFor, type BulkActionKind, type BulkModules, type SelectedItem } from './selection.ts';
import { countsOf, createBulkStore, type BulkActionRecord, type ItemResult } from './store.ts';
import { queryJson } from './service.ts';

/**
 * The bulk runner, in the workers process: takes one unfinished bulk action at a time under a lease
 * (`FOR UPDATE SKIP LOCKED`, renewed while it works), freezes its selection into `bulk_action_items`
 * page by page (keyset cursor saved with each page), then acts on the items without an outcome at the
 * action's rate, recording each chunk's outcomes and counts in one statement. A runner killed mid-way
 * loses its lease; the next one resumes from the recorded items and acts on the rest only.
 */

export interface BulkRunnerDeps {
  pool: Pool;
  logger: Logger;
  /** The selection of a bulk cancel. */
  search: CommandSearch;
  /** The registered command modules (the registry's): whose dead letters a redrive selects. */
  modules: BulkModules;
  /**
   * Redrive (shared/dead-letters/actions.ts): a chunk per transaction with `redriveChunk`, else per item;
   * absent: a redrive fails.
   */
  deadLetters?: Pick<DeadLetterActions, 'redrive'> & Partial<Pick<DeadLetterActions, 'redriveChunk'>>;
  /** Sends again what a killed runner claimed but may not have sent (items.ts). */
  redriveRecovery?: RedriveRecovery;
  /** Per-item cancel (shared/commands/cancel.ts); absent: a cancel fails. */
  canceller?: ItemCanceller;
  /** Per-item replay (replayItems in items.ts); absent: a replay fails. */
  replay?: ItemExecutor;
}

export interface BulkRunnerOptions {
  /** Items per second of an action that names no rate (`BULK_RATE_PER_SECOND`). @defaultValue 200 */
  ratePerSecond?: number;
  /** How often an idle runner looks for work. @defaultValue 1000 */
  pollIntervalMs?: number;
  /** How long a runner that stopped renewing keeps an action from the others. @defaultValue 30000 */
  leaseMs?: number;
  /** Items per page of the selection's snapshot. @defaultValue 1000 */
  snapshotPageSize?: number;
  /** Items acted upon at once; their outcomes are recorded together. @defaultValue 8 */
  concurrency?: number;
  /**
   * Dead letters redriven per transaction (and recorded together) when the redrive takes chunks: one
   * commit per chunk keeps a bulk redrive's WAL flushes from queueing live traffic's. @defaultValue 50
   */
  redriveChunkSize?: number;
  /** Names this runner in the lease. @defaultValue `<host>:<pid>:<random>` */
  owner?: string;
}

export interface BulkRunner {
  start(): void;
  /** Finishes the chunk in hand, records it, releases the lease (another runner resumes at once). Idempotent. */
  stop(): Promise<void>;
}

/** Why an action in hand is left: shutting down, or the lease is no longer ours. */
class Leave extends Error {}

export function createBulkRunner(deps: BulkRunnerDeps, options: BulkRunnerOptions = {}): BulkRunner {
  const ratePerSecond = options.ratePerSecond ?? 200;
  const pollIntervalMs = options.pollIntervalMs ?? 1_000;
  const leaseMs = options.leaseMs ?? 30_000;
  const snapshotPageSize = options.snapshotPageSize ?? 1_000;
  const concurrency = options.concurrency ?? 8;
  const redriveChunkSize = options.redriveChunkSize ?? 50;
  const owner = options.owner ?? `${hostname()}:${process.pid}:${randomUUID().slice(0, 8)}`;
  const store = createBulkStore(deps.pool);
  const log = deps.logger.child({ component: 'bulk-runner', owner });
  const executors: Partial<Record<BulkActionKind, ItemExecutor>> = {
    ...(deps.deadLetters ? { redrive: redriveItems(deps.deadLetters, deps.redriveRecovery) } : {}),
    ...(deps.canceller ? { cancel: cancelItems(deps.canceller) } : {}),
    ...(deps.replay ? { replay: deps.replay } : {}),
  };
  const chunkExecutors: Partial<Record<BulkActionKind, ChunkExecutor>> = {
    ...(deps.deadLetters?.redriveChunk
      ? {
          redrive: redriveChunks(
            { redriveChunk: deps.deadLetters.redriveChunk.bind(deps.deadLetters) },
            deps.redriveRecovery,
          ),
        }
      : {}),
  };
  const stopping = new AbortController();
  let loop: Promise<void> | undefined;
  let stopped: Promise<void> | undefined;

  const pause = (ms: number) =>
    new Promise<void>((resolve) => {
      const done = () => {
        clearTimeout(timer);
        stopping.signal.removeEventListener('abort', done);
        resolve();
      };
      const timer = setTimeout(done, ms);
      stopping.signal.addEventListener('abort', done, { once: true });
    });

  /** Ends the action and audits its final counts, if this runner still holds it. */
  async function finish(a: BulkActionRecord, status: 'completed' | 'failed' | 'cancelled', error?: string) {
    const ended = await withTransaction(deps.pool, async (client) => {
      const row = await store.finish(client, a.id, owner, status, error ?? null);
      if (!row) return null;
      await insertAudit(client, {
        ...row.createdBy,
        action: AuditActions.bulkFinish,
        target: row.id,
        detail: {
          bulkAction: row.action,
          query: queryJson(row.query),
          status,
          ...countsOf(row),
          itemsPerSecond: itemsPerSecond(row),
          ...(error ? { error } : {}),
        },
      });
      return row;
    });
    if (ended) log.info({ bulkId: a.id, status, ...countsOf(ended), error }, 'bulk action finished');
  }

  async function run(claimed: BulkActionRecord): Promise<void> {
    const id = claimed.id;
    let cancelRequested = claimed.cancelRequestedAt !== null;
    let lost = false;
    const renewal = setInterval(
      () => {
        store
          .renew(id, owner, leaseMs)
          .then((r) => {
            if (r === null) lost = true;
            else cancelRequested = r.cancelRequested;
          })
          .catch((err: unknown) => log.warn({ err, bulkId: id }, 'bulk lease not renewed'));
      },
      Math.max(50, Math.floor(leaseMs / 3)),
    );
    /** Between chunks: leave on shutdown or a lost lease; true when an operator asked to cancel. */
    const check = () => {
      if (stopping.signal.aborted || lost) throw new Leave();
      return cancelRequested;
    };
    try {
      log.info({ bulkId: id, action: claimed.action, expected: claimed.expected }, 'bulk action claimed');
      if (check()) return await finish(claimed, 'cancelled');
      const exec = executors[claimed.action];
      if (!exec) return await finish(claimed, 'failed', `this runner cannot ${claimed.action}`);
      let selection;
      try {
        selection = selectionFor(deps, claimed.action, claimed.query, claimed.asOf);
      } catch (err) {
        return await finish(claimed, 'failed', err instanceof Error ? err.message : String(err));
      }
      // 1. Freeze the selection: every matching item recorded before any is acted upon.
      if (!claimed.snapshotDone) {
        let cursor = claimed.snapshotCursor;
        do {
          if (check()) return await finish(claimed, 'cancelled');
          const page = await selection.page(cursor, snapshotPageSize);
          await store.addSnapshotPage(id, page.items, page.nextCursor);
          cursor = page.nextCursor;
        } while (cursor !== null);
      }
      // 2. Act on the items without an outcome, at the action's rate.
      const rate = claimed.ratePerSecond ?? ratePerSecond;
      const bucket = createTokenBucket(rate);
      const ctx = { bulkId: id, who: claimed.createdBy, since: claimed.startedAt ?? claimed.createdAt };
      const chunkExec = chunkExecutors[claimed.action];
      // A chunk gathers at most a quarter second of the rate's tokens: a slow action still reports (and
      // notices a cancel) often.
      const step = chunkExec ? Math.max(1, Math.min(redriveChunkSize, Math.floor(rate / 4))) : concurrency;
      let after: SelectedItem | null = null;
      for (;;) {
        const items = await store.pending(id, after, Math.max(concurrency * 25, step * 4));
        if (items.length === 0) break;
        for (let i = 0; i < items.length; i += step) {
          if (check()) return await finish(claimed, 'cancelled');
          const chunk = items.slice(i, i + step);
          // An item whose turn a shutdown interrupts is not acted upon; those acted upon are recorded.
          let results: ItemResult[];
          if (chunkExec) {
            const taken: SelectedItem[] = [];
            for (const item of chunk) {
              if (cancelRequested || lost) break;
              if (
                !(await bucket.take(stopping.signal).then(
                  () => true,
                  () => false,
                ))
              )
                break;
              taken.push(item);
            }
            const effects = taken.length > 0 ? await chunkExec(taken, ctx) : [];
            results = taken.map((item, k) => ({ ...item, ...effects[k]! }));
          } else {
            const settled = await Promise.allSettled(
              chunk.map(async (item): Promise<ItemResult> => {
                await bucket.take(stopping.signal);
                return { ...item, ...(await settle(exec, item, ctx)) };
              }),
            );
            results = settled.flatMap((s) => (s.status === 'fulfilled' ? [s.value] : []));
          }
          await store.record(id, results);
          after = chunk.at(-1)!;
        }
      }
      check();
      await finish(claimed, 'completed');
    } catch (err) {
      if (!(err instanceof Leave)) throw err;
      if (lost) log.warn({ bulkId: id }, 'bulk lease lost: another runner or an operator has the action');
    } finally {
      clearInterval(renewal);
      // Let another runner resume at once rather than after the lease (a no-op once finished).
      await store
        .release(id, owner)
        .catch((err: unknown) => log.warn({ err, bulkId: id }, 'bulk lease not released'));
    }
  }

  async function work(): Promise<void> {
    while (!stopping.signal.aborted) {
      let claimed: BulkActionRecord | null = null;
      let idle = true;
      try {
        claimed = await store.claim(owner, leaseMs);
        if (claimed) await run(claimed);
        idle = claimed === null;
      } catch (err) {
        log.error({ err, bulkId: claimed?.id }, 'bulk runner error; retrying');
      }
      // After an action, straight to the next one; idle or after an error, a poll interval.
      if (idle) await pause(pollIntervalMs);
    }
  }

  return {
    start() {
      loop ??= work();
    },
    stop: () =>
      (stopped ??= (async () => {
        stopping.abort(new Leave('stopping'));
        await loop;
      })()),
  };
}

/** Items acted upon per second since acting began (the selection is taken first), to now or the end. */
export function itemsPerSecond(a: BulkActionRecord, now = Date.now()): number | null {
  if (!a.executingSince) return null;
  const seconds = ((a.finishedAt?.getTime() ?? now) - a.executingSince.getTime()) / 1_000;
  return seconds > 0 ? Math.round((a.touched / seconds) * 10) / 10 : null;
}
