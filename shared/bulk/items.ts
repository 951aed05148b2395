import { createHash } from 'node:crypto';
import type { AuditActor } from '../audit/audit-log.ts';
import type { DeadLetterActions, ItemResult } from '../dead-letters/actions.ts';
import { fromRow } from '../dead-letters/dead-letter.ts';
import type { Redriver } from '../dead-letters/redrive.ts';
import type { Pool } from '../db/pool.ts';
import { NotFoundError, StateConflictError } from '../errors/domain.ts';
import type { Tenant } from '../fairness/tenants.ts';
import { addBulkExactly, type JobTarget } from '../http/enqueue.ts';
import type { CommandReplay, ModuleDefinition } from '../modules/module.ts';
import { REPLAYABLE, type SelectedItem } from './selection.ts';
import type { ItemOutcome } from './store.ts';

/**
 * What a bulk action does to one item, as an outcome: `succeeded`, `skipped` (nothing to do any more:
 * gone, already handled, already decided) or `failed` (tried, did not happen; the detail says why).
 * Each effect is idempotent by the item's id — a runner resuming after a crash may act again on an item
 * whose effect happened but whose outcome was not recorded, and then finds it already handled.
 */

export interface ItemEffect {
  outcome: ItemOutcome;
  detail: string | null;
}

export interface ItemContext {
  bulkId: string;
  /** Who started the bulk action: each item's own audit row names them. */
  who: AuditActor;
  /** When the action first started: what its runners claimed was claimed after it. */
  since: Date;
}

/**
 * A dead letter's redrive commits its claim only once its send was acknowledged; a runner killed after
 * that commit but before recording the item's outcome leaves it `redriven`. On resume such an item
 * (claimed by the action's creator since the action started, its outcome not recorded) is sent again —
 * the redriver adds no second job for a command already sent, and event consumers dedupe by event id.
 */
export interface RedriveRecovery {
  /** Sends it again when it is such a dead letter; false when it is not. */
  resend(id: string, actor: string, since: Date): Promise<boolean>;
}

export function createRedriveRecovery(pool: Pool, redrive: Redriver): RedriveRecovery {
  return {
    async resend(id, actor, since) {
      const { rows } = await pool.query(
        `SELECT * FROM dead_letters WHERE id = $1 AND status = 'redriven' AND resolved_by = $2 AND resolved_at >= $3`,
        [id, actor, since],
      );
      if (!rows[0]) return false;
      await redrive(fromRow(rows[0]));
      return true;
    },
  };
}

export type ItemExecutor = (item: SelectedItem, ctx: ItemContext) => Promise<ItemEffect>;

/** The part of the command canceller (shared/commands/cancel.ts) a bulk cancel uses. */
export interface ItemCanceller {
  cancel(
    module: string,
    id: string,
    actor: AuditActor,
    reason?: string,
  ): Promise<{ outcome: 'cancelled' | 'already_cancelled' }>;
}

const message = (err: unknown) => (err instanceof Error ? err.message : String(err));

/** The effect of one dead letter's redrive result; one already redriven by this action is sent again. */
async function redriveEffect(
  r: ItemResult,
  ctx: ItemContext,
  recovery: RedriveRecovery | undefined,
): Promise<ItemEffect> {
  if (r.status === 'not_pending' && r.handled === 'redriven' && recovery) {
    if (await recovery.resend(r.id, ctx.who.actor, ctx.since)) {
      return { outcome: 'succeeded', detail: 'sent again: its first send may have been cut short' };
    }
  }
  switch (r.status) {
    case 'redriven':
      return { outcome: 'succeeded', detail: null };
    case 'failed':
      return { outcome: 'failed', detail: r.error ?? 'redrive failed' };
    case 'not_pending':
      return { outcome: 'skipped', detail: `already ${r.handled ?? 'handled'}` };
    default:
      return { outcome: 'skipped', detail: r.status };
  }
}

/** Redrives one dead letter with the dead-letter actions' own redrive (claimed and audited per item). */
export function redriveItems(
  actions: Pick<DeadLetterActions, 'redrive'>,
  recovery?: RedriveRecovery,
): ItemExecutor {
  return async (item, ctx) => redriveEffect(await actions.redrive(item.id, ctx.who), ctx, recovery);
}

/** Acts on a chunk of items at once: one effect per item, in order. */
export type ChunkExecutor = (items: readonly SelectedItem[], ctx: ItemContext) => Promise<ItemEffect[]>;

/**
 * Redrives a chunk of dead letters in one transaction (the actions' redriveChunk): one commit per chunk
 * rather than per dead letter, which is what live traffic sharing the database's WAL feels. A chunk
 * that fails as a whole (the database) fails each of its items; they stay pending.
 */
export function redriveChunks(
  actions: Pick<DeadLetterActions, 'redriveChunk'>,
  recovery?: RedriveRecovery,
): ChunkExecutor {
  return async (items, ctx) => {
    let results: ItemResult[];
    try {
      results = await actions.redriveChunk(
        items.map((i) => i.id),
        ctx.who,
      );
    } catch (err) {
      return items.map(() => ({ outcome: 'failed' as const, detail: message(err) }));
    }
    const effects: ItemEffect[] = [];
    for (const r of results) {
      try {
        effects.push(await redriveEffect(r, ctx, recovery));
      } catch (err) {
        effects.push({ outcome: 'failed', detail: message(err) });
      }
    }
    return effects;
  };
}

/** Cancels one command; one already decided (409) or gone (404) is skipped with its reason. */
export function cancelItems(canceller: ItemCanceller): ItemExecutor {
  return async (item, ctx) => {
    try {
      const r = await canceller.cancel(item.module, item.id, ctx.who, `bulk action ${ctx.bulkId}`);
      return r.outcome === 'cancelled'
        ? { outcome: 'succeeded', detail: null }
        : { outcome: 'skipped', detail: 'already cancelled' };
    } catch (err) {
      if (err instanceof NotFoundError) return { outcome: 'skipped', detail: 'not_found' };
      if (err instanceof StateConflictError) return { outcome: 'skipped', detail: err.message };
      return { outcome: 'failed', detail: message(err) };
    }
  };
}

/**
 * The id of the replay of `originalId` by bulk action `bulkId`: a UUID (version 4 and variant bits set)
 * from the SHA-256 of both, so a runner resuming after a crash posts the same id again — BullMQ keeps
 * one job per id, and the module's write model one decision — and nothing doubles.
 */
export function replayId(bulkId: string, originalId: string): string {
  const b = createHash('sha256').update(`conveyor.replay\0${bulkId}\0${originalId}`).digest().subarray(0, 16);
  b[6] = (b[6]! & 0x0f) | 0x40;
  b[8] = (b[8]! & 0x3f) | 0x80;
  const h = b.toString('hex');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

export interface ReplayDeps {
  pool: Pool;
  modules: readonly ModuleDefinition[];
  /** Where a module's commands are added: its queue and, with FAIRNESS on, its fair queue (as the API's). */
  target(module: string): JobTarget | undefined;
  /** The tenant (its policy) a replay is admitted for: the original's. */
  tenant(id: string): Tenant;
  /** How long one add may take. @defaultValue 5000 */
  timeoutMs?: number;
}

/**
 * Replays one command: a rejected or dead-lettered command posted again as a new command (same payload,
 * producer, tenant and correlation id; a new id from {@link replayId}; `replayOf` naming it), rebuilt
 * from its module's write model and added through the same fair admission as the API's. Skipped: a
 * module without replay, a command gone or no longer replayable, a replay already decided (a resumed
 * runner). Failed: its tenant's backlog quota is full, or Redis did not take it.
 */
export function replayItems(deps: ReplayDeps): ItemExecutor {
  const loaded = new Map<string, Promise<CommandReplay>>();
  const replayOf = (module: ModuleDefinition): Promise<CommandReplay> | undefined => {
    if (!module.replay) return undefined;
    let p = loaded.get(module.name);
    if (!p) {
      p = module.replay.load();
      p.catch(() => loaded.delete(module.name));
      loaded.set(module.name, p);
    }
    return p;
  };
  return async (item, ctx) => {
    const module = deps.modules.find((m) => m.name === item.module);
    const replay = module && replayOf(module);
    const target = deps.target(item.module);
    if (!module || !replay || !target) {
      return { outcome: 'skipped', detail: `module ${item.module} does not replay its commands` };
    }
    const id = replayId(ctx.bulkId, item.id);
    const rows = await (await replay).load(deps.pool, [item.id, id]);
    const original = rows.get(item.id);
    if (!original) return { outcome: 'skipped', detail: 'not_found' };
    if (rows.has(id)) return { outcome: 'skipped', detail: `already replayed as ${id}` };
    if (!(REPLAYABLE as readonly string[]).includes(original.status)) {
      return {
        outcome: 'skipped',
        detail: `${original.status}: only rejected or dead_lettered commands replay`,
      };
    }
    const result = await addBulkExactly(
      target,
      [
        {
          id,
          data: original.job(id, new Date()),
          ...(original.tenant === null ? {} : { tenant: deps.tenant(original.tenant) }),
        },
      ],
      deps.timeoutMs ?? 5_000,
    );
    if (result.accepted.has(id)) return { outcome: 'succeeded', detail: `replayed as ${id}` };
    const why = result.refused?.get(id) ?? result.error ?? 'not accepted';
    return { outcome: 'failed', detail: message(why) };
  };
}

/** Runs an executor; whatever it throws is the item's failure, not the bulk action's. */
export async function settle(exec: ItemExecutor, item: SelectedItem, ctx: ItemContext): Promise<ItemEffect> {
  try {
    return await exec(item, ctx);
  } catch (err) {
    return { outcome: 'failed', detail: message(err) };
  }
}
