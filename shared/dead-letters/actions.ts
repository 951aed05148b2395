import { randomUUID } from 'node:crypto';
import { Queue } from 'bullmq';
import { AuditActions, insertAudit, insertAudits, type AuditActor } from '../audit/audit-log.ts';
import { withTransaction, type Pool, type PoolClient } from '../db/pool.ts';
import type { ModuleDefinition } from '../modules/module.ts';
import type { Logger } from '../observability/logger.ts';
import { commandQueues, queueOptions, QueueNames } from '../queue/names.ts';
import type { Redis } from '../queue/redis.ts';
import { fromRow, type DeadLetterRecord, type Transport } from './dead-letter.ts';
import type { Redriver } from './redrive.ts';
import { createDeadLetterStore } from './store.ts';

/**
 * What an operator may do with a dead letter — redrive it to its origin, or discard it — shared by the
 * API (`/v1/dead-letters/...`) and the dashboard so both behave, and are audited, the same way.
 */

/** Outcome of one dead letter in an action. */
export type ItemStatus = 'redriven' | 'discarded' | 'not_found' | 'not_pending' | 'skipped' | 'failed';

export interface ItemResult {
  id: string;
  status: ItemStatus;
  /** Why a redrive failed (`failed` only); the dead letter is pending again. */
  error?: string;
  /** How it was already handled (`not_pending` only): the API answers 409 for it, not 404. */
  handled?: 'redriven' | 'discarded';
}

/** Which pending dead letters a bulk redrive sends back: every given criterion must match. */
export interface BulkRedriveFilter {
  transport?: Transport;
  origin?: string;
  subjectId?: string;
  /** Only these ids; each gets a result even when it is missing or already resolved. */
  ids?: readonly string[];
  /** At most this many are redriven (oldest first). */
  limit: number;
}

export interface BulkRedriveResult {
  /** Shared by the audit rows of this bulk action. */
  batchId: string;
  results: ItemResult[];
}

export interface DeadLetterActions {
  redrive(id: string, who: AuditActor): Promise<ItemResult>;
  /**
   * Redrives a chunk of dead letters in one transaction (a bulk action's): one result per id, in order.
   * Each is locked, sent, then claimed and audited with the others, so a chunk costs one commit, not one
   * per dead letter; one whose send fails stays pending, its failure audited, the others redriven.
   */
  redriveChunk(ids: readonly string[], who: AuditActor): Promise<ItemResult[]>;
  discard(id: string, who: AuditActor, reason?: string): Promise<ItemResult>;
  redriveMany(filter: BulkRedriveFilter, who: AuditActor): Promise<BulkRedriveResult>;
}

export interface DeadLetterActionsDeps {
  pool: Pool;
  /** Shared connection, used to remove a discarded message's copy from its BullMQ dead-letter queue. */
  redis: Redis;
  queuePrefix: string;
  redrive: Redriver;
  /**
   * The registered command modules (the registry's, from the composition root): a discarded command's
   * copy is removed from its module's dead-letter queue.
   */
  modules: readonly Pick<ModuleDefinition, 'name'>[];
  logger?: Logger;
}

/** Per-origin BullMQ dead-letter queue that holds a copy for Bull Board. */
function copyQueuesOf(modules: readonly Pick<ModuleDefinition, 'name'>[]): Record<string, string> {
  return Object.fromEntries([
    ...modules.map((m) => Object.values(commandQueues(m.name))),
    [QueueNames.events, QueueNames.eventsDeadLetters],
  ]);
}

/** Redrives run a few at a time: enough to empty a backlog quickly without flooding Redis or a broker. */
const BULK_CONCURRENCY = 8;

// The claim and its audit row commit together: a dead letter is never resolved anonymously, and two
// operators racing on the same id cannot both win (`status = 'pending'` in the WHERE; the second waits
// for the first's row lock, then finds it handled).
const CLAIM_SQL = `
  UPDATE dead_letters SET status = $2, resolved_at = now(), resolved_by = $3,
         redrive_count = redrive_count + (CASE WHEN $2 = 'redriven' THEN 1 ELSE 0 END)
   WHERE id = $1 AND status = 'pending'
  RETURNING *`;

// A chunk's dead letters are locked before their sends (a concurrent redrive of one waits, then finds it
// handled), in id order so two chunks never deadlock; only the sent ones are then claimed.
const LOCK_MANY_SQL = `
  SELECT * FROM dead_letters WHERE id = ANY($1::text[]) AND status = 'pending' ORDER BY id FOR UPDATE`;
const CLAIM_MANY_SQL = `
  UPDATE dead_letters SET status = 'redriven', resolved_at = now(), resolved_by = $2,
         redrive_count = redrive_count + 1
   WHERE id = ANY($1::text[]) AND status = 'pending'`;

/** Runs `fn` over `items`, {@link BULK_CONCURRENCY} at a time. */
async function inLanes<T>(items: readonly T[], fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const lane = async () => {
    while (next < items.length) await fn(items[next++]!);
  };
  await Promise.all(Array.from({ length: Math.min(BULK_CONCURRENCY, items.length) }, lane));
}

function handledAs(status: string): Pick<ItemResult, 'handled'> {
  return status === 'redriven' || status === 'discarded' ? { handled: status } : {};
}

function describe(dl: DeadLetterRecord): Record<string, unknown> {
  return { transport: dl.transport, origin: dl.origin, kind: dl.kind, subjectId: dl.subjectId };
}

/**
 * @example
 * const actions = createDeadLetterActions({ pool, redis, queuePrefix, redrive, modules: MODULES });
 * const result = await actions.redrive(id, { actor: 'alice', role: 'admin', source: 'dashboard', ip, userAgent });
 */
export function createDeadLetterActions(deps: DeadLetterActionsDeps): DeadLetterActions {
  const store = createDeadLetterStore(deps.pool);
  const log = deps.logger?.child({ component: 'dead-letter-actions' });
  const copyQueues = copyQueuesOf(deps.modules);

  /** Claims a pending dead letter and records the action on `client` (in its transaction); null when it is not pending. */
  async function claimOn(
    client: PoolClient,
    id: string,
    status: 'redriven' | 'discarded',
    who: AuditActor,
    action: string,
    extra: Record<string, unknown>,
  ): Promise<DeadLetterRecord | null> {
    const { rows } = await client.query(CLAIM_SQL, [id, status, who.actor]);
    if (!rows[0]) return null;
    const dl = fromRow(rows[0]);
    await insertAudit(client, { ...who, action, target: id, detail: { ...describe(dl), ...extra } });
    return dl;
  }

  /** Not claimed: no such dead letter, or one already handled (and how), read from the primary. */
  async function notClaimed(id: string): Promise<ItemResult> {
    const dl = await store.get(id);
    if (!dl) return { id, status: 'not_found' };
    return { id, status: 'not_pending', ...handledAs(dl.status) };
  }

  /**
   * Claims, sends, then commits: the claim (and its audit row) commits only once the send was
   * acknowledged. A process that dies in between (kill -9, OOM, a deploy) leaves its transaction to roll
   * back: the dead letter is pending again, never `redriven` unsent. The claim's row lock is held while
   * sending, so a concurrent redrive of the same id waits for it and then finds it handled: one send.
   * A crash after the send but before the commit leaves it pending though sent; redriving it again sends
   * nothing twice (see {@link createRedriver}).
   */
  async function redrive(
    id: string,
    who: AuditActor,
    extra: Record<string, unknown> = {},
  ): Promise<ItemResult> {
    let unsent: { dl: DeadLetterRecord; err: unknown } | undefined;
    let dl: DeadLetterRecord | null;
    try {
      dl = await withTransaction(deps.pool, async (client) => {
        const claimed = await claimOn(client, id, 'redriven', who, AuditActions.deadLetterRedrive, extra);
        if (!claimed) return null;
        try {
          await deps.redrive(claimed);
        } catch (err) {
          unsent = { dl: claimed, err };
          throw err;
        }
        return claimed;
      });
    } catch (err) {
      if (!unsent) throw err;
      // Not sent: the claim rolled back, so it is pending and can be redriven again; the failure is on record.
      const error = err instanceof Error ? err.message : String(err);
      await insertAudit(deps.pool, {
        ...who,
        action: AuditActions.deadLetterRedriveFailed,
        target: id,
        detail: { ...describe(unsent.dl), ...extra, error },
      }).catch((auditErr: unknown) => log?.error({ err: auditErr, deadLetterId: id }, 'audit write failed'));
      log?.warn({ err, deadLetterId: id, actor: who.actor }, 'dead letter redrive failed');
      return { id, status: 'failed', error };
    }
    if (!dl) return notClaimed(id);
    log?.info(
      { deadLetterId: id, ...describe(dl), actor: who.actor, source: who.source },
      'dead letter redriven',
    );
    return { id, status: 'redriven' };
  }

  /** See {@link DeadLetterActions.redriveChunk}; the sends run {@link BULK_CONCURRENCY} at a time. */
  async function redriveChunk(ids: readonly string[], who: AuditActor): Promise<ItemResult[]> {
    const unique = [...new Set(ids)];
    const outcomes = new Map<string, ItemResult>();
    const failures: { dl: DeadLetterRecord; error: string }[] = [];
    const sent: DeadLetterRecord[] = [];
    await withTransaction(deps.pool, async (client) => {
      const { rows } = await client.query(LOCK_MANY_SQL, [unique]);
      await inLanes(rows.map(fromRow), async (dl) => {
        try {
          await deps.redrive(dl);
          sent.push(dl);
        } catch (err) {
          failures.push({ dl, error: err instanceof Error ? err.message : String(err) });
        }
      });
      if (sent.length > 0) await client.query(CLAIM_MANY_SQL, [sent.map((dl) => dl.id), who.actor]);
      await insertAudits(client, [
        ...sent.map((dl) => ({
          ...who,
          action: AuditActions.deadLetterRedrive,
          target: dl.id,
          detail: describe(dl),
        })),
        ...failures.map(({ dl, error }) => ({
          ...who,
          action: AuditActions.deadLetterRedriveFailed,
          target: dl.id,
          detail: { ...describe(dl), error },
        })),
      ]);
    });
    for (const dl of sent) outcomes.set(dl.id, { id: dl.id, status: 'redriven' });
    for (const { dl, error } of failures) {
      log?.warn({ err: error, deadLetterId: dl.id, actor: who.actor }, 'dead letter redrive failed');
      outcomes.set(dl.id, { id: dl.id, status: 'failed', error });
    }
    if (sent.length > 0) {
      log?.info({ count: sent.length, actor: who.actor, source: who.source }, 'dead letters redriven');
    }
    // Not locked: missing, resolved, or pending again after a resolve in between (skipped: try again).
    for (const r of await classifyUnselected(unique.filter((id) => !outcomes.has(id)))) outcomes.set(r.id, r);
    return ids.map((id) => outcomes.get(id)!);
  }

  async function removeBullmqCopy(dl: DeadLetterRecord): Promise<void> {
    // A non-default group's event queue (`events.<group>`) dead-letters into the same copy queue.
    const name =
      dl.transport !== 'bullmq'
        ? undefined
        : dl.origin.startsWith(`${QueueNames.events}.`)
          ? QueueNames.eventsDeadLetters
          : copyQueues[dl.origin];
    if (!name) return;
    // Short-lived: discards are rare, and a Queue on a shared connection holds nothing to release.
    const queue = new Queue(name, queueOptions(deps.redis, deps.queuePrefix, name));
    try {
      await queue.remove(dl.id);
    } finally {
      await queue.close();
    }
  }

  async function selectPending(filter: BulkRedriveFilter): Promise<string[]> {
    const { rows } = await deps.pool.query<{ id: string }>(
      `SELECT id FROM dead_letters
        WHERE status = 'pending' AND ($1::text IS NULL OR transport = $1) AND ($2::text IS NULL OR origin = $2)
          AND ($3::text IS NULL OR subject_id = $3) AND ($4::text[] IS NULL OR id = ANY($4::text[]))
        ORDER BY failed_at ASC, id ASC LIMIT $5`,
      [
        filter.transport ?? null,
        filter.origin ?? null,
        filter.subjectId ?? null,
        filter.ids ? [...filter.ids] : null,
        filter.limit,
      ],
    );
    return rows.map((r) => r.id);
  }

  /** Why each requested id was not selected: missing, resolved, or pending but outside the filter. */
  async function classifyUnselected(ids: readonly string[]): Promise<ItemResult[]> {
    if (ids.length === 0) return [];
    const { rows } = await deps.pool.query<{ id: string; status: string }>(
      'SELECT id, status FROM dead_letters WHERE id = ANY($1::text[])',
      [[...ids]],
    );
    const status = new Map(rows.map((r) => [r.id, r.status]));
    return ids.map((id): ItemResult => {
      const s = status.get(id);
      if (s === undefined) return { id, status: 'not_found' };
      return s === 'pending' ? { id, status: 'skipped' } : { id, status: 'not_pending', ...handledAs(s) };
    });
  }

  return {
    redrive: (id, who) => redrive(id, who),
    redriveChunk,

    async discard(id, who, reason) {
      const dl = await withTransaction(deps.pool, (client) =>
        claimOn(client, id, 'discarded', who, AuditActions.deadLetterDiscard, reason ? { reason } : {}),
      );
      if (!dl) return notClaimed(id);
      await removeBullmqCopy(dl).catch((err: unknown) =>
        log?.warn({ err, deadLetterId: id }, 'could not remove the BullMQ copy of a discarded dead letter'),
      );
      log?.info(
        { deadLetterId: id, ...describe(dl), actor: who.actor, source: who.source },
        'dead letter discarded',
      );
      return { id, status: 'discarded' };
    },

    async redriveMany(filter, who) {
      const batchId = randomUUID();
      const requested = filter.ids ? [...new Set(filter.ids)] : undefined;
      const selected = await selectPending({ ...filter, ...(requested ? { ids: requested } : {}) });
      const outcomes = new Map<string, ItemResult>();
      await inLanes(selected, async (id) => {
        outcomes.set(id, await redrive(id, who, { batchId }));
      });

      const chosen = new Set(selected);
      const unselected = requested ? await classifyUnselected(requested.filter((id) => !chosen.has(id))) : [];
      for (const r of unselected) outcomes.set(r.id, r);
      // With ids: one result per requested id, in request order; without: the selection, oldest first.
      const results = (requested ?? selected).map(
        (id) => outcomes.get(id) ?? { id, status: 'skipped' as const },
      );
      const counts: Record<string, number> = {};
      for (const r of results) counts[r.status] = (counts[r.status] ?? 0) + 1;
      const { ids: _ids, ...criteria } = filter;
      await insertAudit(deps.pool, {
        ...who,
        action: AuditActions.deadLetterRedriveBulk,
        target: null,
        detail: { batchId, filter: { ...criteria, ids: requested?.length ?? null }, counts },
      });
      return { batchId, results };
    },
  };
}
