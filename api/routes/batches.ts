import { createRoute, OpenAPIHono, z } from '@hono/zod-openapi';
import { MODULES } from '../../modules/registry.ts';
import type { ModuleDefinition } from '../../shared/modules/module.ts';
import { readBatch } from '../../shared/batches/store.ts';
import { NotFoundError } from '../../shared/errors/domain.ts';
import { hasScope } from '../../shared/security/api-keys.ts';
import type { ApiDeps, ApiEnv } from '../../shared/http/context.ts';
import { problemResponses } from '../../shared/http/schemas.ts';

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
