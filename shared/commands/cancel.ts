import type { Job, Queue } from 'bullmq';
import { AuditActions, insertAudit, type AuditActor } from '../audit/audit-log.ts';
import { recordBatchDecisions } from '../batches/store.ts';
import { insertOutbox } from '../db/outbox.sql.ts';
import type { Pool, PoolClient } from '../db/pool.ts';
import { NotFoundError, StateConflictError } from '../errors/domain.ts';
import type { FairQueue } from '../fairness/fair-queue.ts';
import type { Logger } from '../observability/logger.ts';
import { attemptsMadeOf } from '../queue/job-delivery.ts';
import type { Redis } from '../queue/redis.ts';
import { createOutcomePublisher } from '../results/wire.ts';
import type { CommandSummary } from '../search/query.ts';
import type { CancellableCommands, CommandCancellation } from '../modules/module.ts';

/** What a cancel did: cancelled it now, or found it cancelled before (idempotent). */
export type CancelResult = { outcome: 'cancelled' | 'already_cancelled'; command: CommandSummary };

/** The states a command cannot be cancelled in: decided, or being executed by a worker right now. */
export type NotCancellableState = 'completed' | 'rejected' | 'dead_lettered' | 'processing';

/** The audit log's action of a cancel. */
export const COMMAND_CANCEL_ACTION = AuditActions.commandCancel;

/** 409: the command is decided (its state says how) or a worker is executing it now. */
export class CommandNotCancellableError extends StateConflictError {
  constructor(
    readonly module: string,
    readonly id: string,
    readonly state: NotCancellableState | string,
  ) {
    super(
      'command.not_cancellable',
      state === 'processing'
        ? `${module} command ${id} is being processed: only a command not yet decided and not running can be cancelled`
        : `${module} command ${id} is ${state}: only a command not yet decided can be cancelled`,
    );
  }
}

export interface CommandCanceller {
  /**
   * Cancels a command not yet decided: it is never executed, its module's write model says
   * `cancelled`, its `<aggregate>.cancelled` event is in the outbox, its audit row names `actor`.
   * `options.owner`: cancel only a command of that API key (its `apiKey`, or the tenant `owner.tenant`);
   * another's reads as unknown. Throws {@link NotFoundError} (unknown) or {@link CommandNotCancellableError} (409).
   */
  cancel(
    module: string,
    id: string,
    actor: AuditActor,
    reason?: string,
    options?: { owner?: { apiKey: string; tenant: string } },
  ): Promise<CancelResult>;
}

export interface CommandCancellerDeps {
  /** The primary. */
  pool: Pool;
  /** The registered modules; those declaring `cancel` are cancellable. */
  modules: readonly { name: string; cancel?: CancellableCommands | undefined }[];
  /** A module's command queue. */
  queue(module: string): Queue | undefined;
  /** A module's fair queue when fairness is on: a cancelled job's in-flight slot is given back at once. */
  fair?(module: string): FairQueue | undefined;
  /** A connection (not in subscriber mode) for the results notices and the fair queue's dispatch. */
  redis: Redis;
  /** The BullMQ prefix (`REDIS_QUEUE_PREFIX`): the results channel's too. */
  prefix: string;
  logger: Logger;
  now?: () => Date;
}

/**
 * Advisory lock class of a cancel in progress (two-key form: `(class, hashtext('<module>/<id>'))`).
 * A cancel holds it from before it removes the job until its commit; {@link settleCancels} waits for it.
 */
const CANCEL_LOCK_CLASS = 230_023;

/**
 * Waits for the cancels of `ids` in progress to end (commit or roll back). A cancel removes its job from
 * Redis just before it commits its `cancelled` row: a reader that found neither the job nor a row calls
 * this before its last read of the write model, which then sees the cancel's row — so a command being
 * cancelled never reads as unknown. One statement; costs nothing when no cancel holds the locks.
 */
export async function settleCancels(
  db: Pool | PoolClient,
  module: string,
  ids: readonly string[],
): Promise<void> {
  if (ids.length === 0) return;
  await db.query(
    `SELECT pg_advisory_xact_lock_shared($1, hashtext($2 || '/' || id)) FROM unnest($3::text[]) AS id`,
    [CANCEL_LOCK_CLASS, module, ids],
  );
}

/**
 * The cancel of shared/commands (issue #23): `POST /v1/<module>/{id}/cancel` and bulk cancels.
 *
 * Exactly one winner against the worker, by PostgreSQL and one BullMQ script:
 * 1. In ONE transaction, the module inserts the command's `cancelled` row only when it has none
 *    (`ON CONFLICT DO NOTHING`): a decision committed — or being committed by a worker, whose
 *    uncommitted row the insert waits for — wins, and the answer is 409 with its state.
 * 2. Still in it, with the outbox event, the batch count and the audit row written, the job is removed
 *    from Redis by BullMQ's `removeJob` script, which refuses a job a worker holds locked (`active`): then
 *    the transaction rolls back and the answer is 409 `processing`. A job not locked is removed
 *    atomically: no worker can take it afterwards (`moveToActive` pops it from the same lists).
 * 3. COMMIT. Should it fail, the job is added back with its data and id (unless the row turns out
 *    committed), so nothing is lost.
 * A worker that took the job before the removal holds its lock (step 2 fails); one whose decision
 * follows a committed cancel (a redelivery) finds the `cancelled` row and changes nothing — the
 * modules' upserts leave every row but a dead-lettered one alone.
 * After the commit it tells the results hub (`decided`, `cancelled`: waiters and streams answer) and
 * gives the job's fair-queue slot back.
 */
export function createCommandCanceller(deps: CommandCancellerDeps): CommandCanceller {
  const now = deps.now ?? (() => new Date());
  const log = deps.logger.child({ component: 'cancel' });
  const outcomes = createOutcomePublisher(deps.redis, deps.prefix, (err) =>
    log.debug({ err }, 'results step not published'),
  );
  const declared = new Map(deps.modules.flatMap((m) => (m.cancel ? [[m.name, m.cancel] as const] : [])));
  const loaded = new Map<string, Promise<CommandCancellation>>();
  const cancellationOf = (module: string): Promise<CommandCancellation> => {
    const declaration = declared.get(module);
    if (!declaration) throw new NotFoundError(`module ${module} has no cancellable commands`);
    let p = loaded.get(module);
    if (!p) {
      p = declaration.load();
      loaded.set(module, p);
    }
    return p;
  };

  // The key that posted it, or its tenant: the key's own (`<key id>`), one of its sub-tenants
  // (`<key id>/<sub>`), or the tenant the request names.
  const owns = (summary: CommandSummary, owner: { apiKey: string; tenant: string } | undefined) =>
    owner === undefined ||
    summary.apiKey === owner.apiKey ||
    (summary.tenant !== null &&
      (summary.tenant === owner.tenant ||
        summary.tenant === owner.apiKey ||
        summary.tenant.startsWith(`${owner.apiKey}/`)));

  /** A command with a row already: cancelled before (idempotent) or decided (409). */
  function settled(module: string, existing: CommandSummary): CancelResult {
    if (existing.status === 'cancelled') return { outcome: 'already_cancelled', command: existing };
    throw new CommandNotCancellableError(module, existing.id, existing.status);
  }

  /** Adds a removed job back when its cancel did not commit (its row is not there). */
  async function restore(module: string, queue: Queue, job: Job, cancellation: CommandCancellation) {
    const id = job.id!;
    try {
      const row = await cancellation.find(deps.pool, id).catch(() => undefined);
      if (row?.status === 'cancelled') return;
      await queue.add(job.name, job.data, { ...job.opts, jobId: id });
      log.warn({ module, jobId: id }, 'cancel did not commit: job added back');
    } catch (err) {
      log.error(
        { err, module, jobId: id, data: job.data },
        'cancel did not commit and its job could not be added back',
      );
    }
  }

  return {
    async cancel(module, id, actor, reason, options = {}) {
      const cancellation = await cancellationOf(module);
      const unknown = () => new NotFoundError(`no ${module} command ${id}`);
      if (!cancellation.isId(id)) throw unknown();
      const queue = deps.queue(module);
      if (!queue) throw new NotFoundError(`module ${module} has no command queue`);

      const job = await queue.getJob(id);
      // No job: decided (its job removed after its decision committed), being cancelled, or unknown.
      const byRow = async () => {
        await settleCancels(deps.pool, module, [id]);
        const existing = await cancellation.find(deps.pool, id);
        if (!existing || !owns(existing, options.owner)) throw unknown();
        return settled(module, existing);
      };
      if (!job) return byRow();
      // A worker holds it now (or it finished, its row written): no row lock taken against the worker.
      const state = await job.getState();
      if (state === 'active' || state === 'completed' || state === 'failed') {
        const existing = await cancellation.find(deps.pool, id);
        if (existing) {
          if (!owns(existing, options.owner)) throw unknown();
          return settled(module, existing);
        }
        if (state === 'active') throw new CommandNotCancellableError(module, id, 'processing');
      }

      const at = now();
      const client = await deps.pool.connect();
      let removed = false;
      // Committed, or rolled back on purpose: nothing left to undo.
      let ended = false;
      let summary: CommandSummary;
      try {
        await client.query('BEGIN');
        await client.query('SELECT pg_advisory_xact_lock($1, hashtext($2))', [
          CANCEL_LOCK_CLASS,
          `${module}/${id}`,
        ]);
        const write = await cancellation.cancel(client, {
          id,
          data: job.data,
          attempts: attemptsMadeOf(job),
          at,
          actor: actor.actor,
          reason: reason ?? null,
        });
        if (!write.written) {
          await client.query('ROLLBACK');
          ended = true;
          if (!owns(write.existing, options.owner)) throw unknown();
          return settled(module, write.existing);
        }
        summary = write.summary;
        if (!owns(summary, options.owner)) throw unknown();
        await insertOutbox(client, write.events);
        if (write.batchId) {
          await recordBatchDecisions(client, module, [
            { batchId: write.batchId, itemId: id, outcome: 'cancelled' },
          ]);
        }
        await insertAudit(client, {
          ...actor,
          action: COMMAND_CANCEL_ACTION,
          target: `${module}/${id}`,
          detail: { module, id, reason: reason ?? null, outcome: 'cancelled' },
        });
        // BullMQ's removeJob: 1 removed (or already gone), 0 locked by a worker, < 0 not removable.
        const code = await queue.remove(id, { removeChildren: false });
        if (code !== 1) throw new CommandNotCancellableError(module, id, 'processing');
        removed = true;
        await client.query('COMMIT');
        ended = true;
      } catch (err) {
        if (!ended) {
          await client.query('ROLLBACK').catch(() => undefined);
          if (removed) await restore(module, queue, job, cancellation);
        }
        throw err;
      } finally {
        client.release();
      }

      outcomes.publish(module, { id, step: 'decided', status: 'cancelled' });
      const fair = deps.fair?.(module);
      if (fair) {
        // Its tenant's in-flight slot (taken when it was let into the wait list) goes back now.
        await fair
          .dispatch(deps.redis, [id])
          .catch((err: unknown) => log.warn({ err, module, jobId: id }, 'fair slot not given back'));
      }
      await outcomes.flush();
      log.info({ module, jobId: id, actor: actor.actor, source: actor.source }, 'command cancelled');
      return { outcome: 'cancelled', command: summary };
    },
  };
}
