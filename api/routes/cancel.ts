import { createRoute, OpenAPIHono, z } from '@hono/zod-openapi';
import {
  CommandNotCancellableError,
  createCommandCanceller,
  type CommandCanceller,
} from '../../shared/commands/cancel.ts';
import { problem } from '../../shared/errors/problem.ts';
import { freeText } from '../../shared/domain/text.ts';
import type { ApiDeps, ApiEnv } from '../../shared/http/context.ts';
import { apiActor } from './audit-actor.ts';
import { bodyLimit } from '../../shared/http/body-limit.ts';
import { problemResponse } from '../../shared/http/errors.ts';
import { ProblemSchema, problemResponses } from '../../shared/http/schemas.ts';
// The search's result row (one OpenAPI component for both).
import { CommandSummarySchema } from './search.ts';

/** A cancel's body (optional): why, for the audit log and the `<aggregate>.cancelled` event. */
const CancelBody = z.strictObject({ reason: freeText({ max: 500 }).optional() }).openapi('CancelRequest');

const CancelResultSchema = z
  .object({
    outcome: z
      .enum(['cancelled', 'already_cancelled'])
      .describe('cancelled now, or by an earlier cancel (a repeated cancel changes nothing)'),
    command: CommandSummarySchema,
  })
  .openapi('CancelResult');

/** `/v1/orders/:orderId` → `/v1/orders/{orderId}` and its parameter's name. */
function openapiPath(path: string): { path: string; param: string } {
  const param = path
    .split('/')
    .find((p) => p.startsWith(':'))
    ?.slice(1);
  if (!param) throw new Error(`a cancellable command path names its id: ${path}`);
  return { path: path.replace(`:${param}`, `{${param}}`), param };
}

/** What the cancel routes use of the API's deps. */
export type CancelRouteDeps = Pick<ApiDeps, 'pool' | 'redis' | 'config' | 'logger' | 'commandQueues'>;

/** The canceller over the API's own queues (each module's command queue and, with fairness, its fair queue). */
export function apiCanceller(deps: CancelRouteDeps): CommandCanceller {
  return createCommandCanceller({
    pool: deps.pool,
    modules: [...deps.commandQueues.values()].map((t) => t.module),
    queue: (module) => deps.commandQueues.get(module)?.queue,
    fair: (module) => deps.commandQueues.get(module)?.fair?.queue,
    redis: deps.redis,
    prefix: deps.config.redis.queuePrefix,
    logger: deps.logger,
  });
}

/**
 * `POST <command>/cancel` for every module that declares its commands cancellable (`cancel` in its
 * declaration: `/v1/orders/{orderId}/cancel`, `/v1/refunds/{refundId}/cancel`). The module's write scope
 * (the path's: the auth middleware's rule); a key without `admin` cancels only its own commands (another's
 * reads as 404). 200 `cancelled` or `already_cancelled`; 404 unknown; 409 `command.not_cancellable` with
 * its `state` (completed, rejected, dead_lettered, or processing while a worker runs it).
 */
export function cancelRoutes(
  deps: CancelRouteDeps,
  canceller: CommandCanceller = apiCanceller(deps),
): OpenAPIHono<ApiEnv> {
  const app = new OpenAPIHono<ApiEnv>();
  for (const target of deps.commandQueues.values()) {
    const { module } = target;
    if (!module.cancel) continue;
    const { path, param } = openapiPath(module.cancel.path);
    const route = createRoute({
      method: 'post',
      path: `${path}/cancel`,
      tags: [module.name],
      summary: `Cancel a ${module.name} command not yet decided: it is never executed`,
      request: {
        params: z.object({
          [param]: z
            .string()
            .min(1)
            .max(200)
            .openapi({ param: { name: param, in: 'path' } }),
        }),
        body: { content: { 'application/json': { schema: CancelBody } }, required: false },
      },
      responses: {
        200: {
          description: 'Cancelled (now, or already by an earlier cancel)',
          content: { 'application/json': { schema: CancelResultSchema } },
        },
        404: {
          description: 'No such command',
          content: { 'application/problem+json': { schema: ProblemSchema } },
        },
        409: {
          description:
            'Decided already, or being executed: `state` says which (completed, rejected, dead_lettered, processing)',
          content: { 'application/problem+json': { schema: ProblemSchema } },
        },
        ...problemResponses,
      },
    });
    app.use(`${module.cancel.path}/cancel`, bodyLimit({ maxSize: deps.config.api.bodyLimitBytes }));
    app.openapi(route, async (c) => {
      const id = (c.req.valid('param') as Record<string, string>)[param]!;
      const hasBody = (c.req.header('content-type') ?? '').includes('json');
      const body = hasBody ? c.req.valid('json') : {};
      const scopes = c.get('scopes');
      const owner = scopes.includes('admin')
        ? undefined
        : { apiKey: c.get('principal'), tenant: c.get('tenant').id };
      try {
        const result = await canceller.cancel(
          module.name,
          id,
          apiActor(c),
          body.reason,
          owner ? { owner } : {},
        );
        return c.json(result, 200);
      } catch (err) {
        if (err instanceof CommandNotCancellableError) {
          // The problem names the state, as a member of its own (an RFC 9457 extension member).
          const body = Object.assign(problem(409, err.code, err.message), { state: err.state });
          return problemResponse(c, body) as never;
        }
        throw err;
      }
    });
  }
  return app;
}
