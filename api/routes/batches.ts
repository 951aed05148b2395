import { randomUUID } from 'node:crypto';
import type { Context } from 'hono';
import { createRoute, OpenAPIHono, z } from '@hono/zod-openapi';
import { MODULES } from '../../modules/registry.ts';
import type { ModuleDefinition } from '../../modules/module.ts';
import { openBatch, readBatch } from '../../shared/batches/store.ts';
import type { Pool } from '../../shared/db/pool.ts';
import { NotFoundError } from '../../shared/errors/domain.ts';
import { hasScope } from '../../shared/security/api-keys.ts';
import type { ApiDeps, ApiEnv } from '../context.ts';
import { derivedId } from '../edge/idempotent.ts';
import { requestLog } from '../log.ts';
import { problemResponses } from '../schemas.ts';

export const BatchProgressSchema = z
  .object({
    id: z.uuid(),
    module: z.string().openapi({ example: 'orders' }),
    /** Items accepted at the API (those refused per item, 429/503, are not part of the batch). */
    total: z.number().int(),
    accepted: z.number().int(),
    completed: z.number().int(),
    rejected: z.number().int(),
    deadLettered: z.number().int(),
    cancelled: z.number().int(),
    /** Accepted and not decided yet. */
    pending: z.number().int(),
    createdAt: z.string(),
    /** When its last item was decided (and `batch.completed` emitted); null while any is pending. */
    completedAt: z.string().nullable(),
  })
  .openapi('BatchProgress');

const getBatch = createRoute({
  method: 'get',
  path: '/v1/batches/{id}',
  tags: ['batches'],
  summary: "A batch's progress: its accepted items, how many are completed, rejected, dead-lettered",
  request: { params: z.object({ id: z.uuid() }) },
  responses: {
    200: {
      description: 'The batch',
      content: { 'application/json': { schema: BatchProgressSchema } },
    },
    ...problemResponses,
  },
});

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

/**
 * `GET /v1/batches/{id}`: a batch's progress, for the key that posted it or a key of the same tenant
 * holding its module's read scope, and for `admin`; anyone else gets 404 (not 403: a batch id says
 * nothing about whether it exists). Read on the primary: progress read from a lagging replica could
 * go backwards.
 */
export function batchRoutes(
  deps: Pick<ApiDeps, 'pool'>,
  modules: readonly Pick<ModuleDefinition, 'name' | 'scopes'>[] = MODULES,
): OpenAPIHono<ApiEnv> {
  const app = new OpenAPIHono<ApiEnv>();
  const readScope = new Map(modules.map((m) => [m.name, m.scopes.read]));
  app.openapi(getBatch, async (c) => {
    const { id } = c.req.valid('param');
    const batch = await readBatch(deps.pool, id);
    const principal = { id: c.get('principal'), scopes: c.get('scopes') };
    const admin = principal.scopes.includes('admin');
    const scope = batch ? readScope.get(batch.module) : undefined;
    const theirs =
      batch !== undefined &&
      scope !== undefined &&
      hasScope(principal, scope) &&
      (batch.acceptedBy === principal.id || batch.tenant === c.get('tenant').id);
    if (!batch || batch.total === null || !(admin || theirs)) {
      throw new NotFoundError(`no batch ${id}`);
    }
    const decided = batch.completed + batch.rejected + batch.deadLettered + batch.cancelled;
    return c.json(
      {
        id: batch.id,
        module: batch.module,
        total: batch.total,
        accepted: batch.total,
        completed: batch.completed,
        rejected: batch.rejected,
        deadLettered: batch.deadLettered,
        cancelled: batch.cancelled,
        pending: Math.max(0, batch.total - decided),
        createdAt: batch.createdAt,
        completedAt: batch.completedAt,
      },
      200,
    );
  });
  return app;
}
