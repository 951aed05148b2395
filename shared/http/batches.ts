import { randomUUID } from 'node:crypto';
import type { Context } from 'hono';
import { openBatch } from '../batches/store.ts';
import type { Pool } from '../db/pool.ts';
import type { ApiEnv } from './context.ts';
import { derivedId } from './idempotent.ts';
import { requestLog } from './log.ts';

/** What a module's batch route adds to its `202`: the batch id (body) and where to read it (headers). */
export interface OpenedBatch {
  batchId: string;
  headers: { location: string };
}

/** The core side of a module's batch route (see {@link createBatchOpener}). */
export interface BatchOpener {
  /**
   * The batch id of a request, for its items' job data (`batchId`): derived from the Idempotency-Key's
   * seed, so a retry of the same request maps to the same batch; a new one without a key.
   */
  idFor(seed: string | null | undefined): string;
  /**
   * Records the batch once its items are enqueued: `accepted` of them (the ones refused at the API are
   * not part of it), posted by the request's key for its tenant. Undefined when PostgreSQL could not
   * record it (the items are enqueued all the same; the answer should not be remembered, so a retry
   * with the same key records it).
   */
  open(c: Context<ApiEnv>, batchId: string, accepted: number): Promise<OpenedBatch | undefined>;
}

/**
 * Batches for a module's batch route: the one helper it calls. Each item's job carries the batch id;
 * the module's handler counts its decisions with `recordBatchDecisions` (shared/batches/store.ts) in
 * the transaction that decides them, which also emits `batch.completed` once every item is decided.
 * @example const batches = createBatchOpener(deps.pool, 'orders'); const id = batches.idFor(seed); … const opened = await batches.open(c, id, accepted.size);
 */
export function createBatchOpener(pool: Pool, module: string): BatchOpener {
  return {
    idFor: (seed) => (seed ? derivedId(seed, 'batch') : randomUUID()),
    async open(c, batchId, accepted) {
      try {
        await openBatch(pool, {
          batchId,
          module,
          accepted,
          tenant: c.get('tenant').id,
          acceptedBy: c.get('principal'),
          correlationId: c.get('correlationId'),
        });
        return { batchId, headers: { location: `/v1/batches/${batchId}` } };
      } catch (err) {
        requestLog(c).warn({ err, batchId, module }, 'batch not recorded; its items are enqueued');
        return undefined;
      }
    },
  };
}
