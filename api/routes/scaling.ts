import { createRoute, OpenAPIHono, z } from '@hono/zod-openapi';
import { DependencyUnavailableError, NotFoundError } from '../../shared/errors/domain.ts';
import type { QueueStats, QueueStatsReader } from '../../shared/observability/queue-stats.ts';
import type { ApiEnv } from '../../shared/http/context.ts';
import { ProblemSchema, problemResponses } from '../../shared/http/schemas.ts';
import { withDeadline } from '../../shared/runtime/deadline.ts';

export interface ScalingDeps {
  queues: QueueStatsReader;
  /** Bound on the Redis reads; past it the answer is 503 (KEDA keeps its last value). */
  timeoutMs: number;
}

const count = z.number().int().min(0);

export const ScalingSchema = z
  .object({
    queue: z.string().openapi({ example: 'orders' }),
    backlog: count.openapi({
      description:
        'waiting + prioritized + held: runnable jobs no worker has taken yet. KEDA metrics-api `valueLocation: backlog`.',
    }),
    waiting: count,
    prioritized: count,
    held: count.openapi({
      description:
        "Commands waiting their tenant's turn (fairness), kept by BullMQ as delayed jobs with a long hold: runnable, in the backlog",
    }),
    delayed: count.openapi({
      description: 'Not runnable yet (retry backoff, delayed jobs), held ones excepted: not in the backlog',
    }),
    active: count,
    failed: count,
    completed: count,
    waitingChildren: count,
    paused: z.boolean(),
    oldestWaitingAgeSeconds: z.number().min(0).openapi({ description: 'Age of the oldest runnable job' }),
  })
  .openapi('QueueScaling');

const scaling = createRoute({
  method: 'get',
  path: '/v1/scaling/{queue}',
  tags: ['operations'],
  summary: 'Queue depth for autoscalers (KEDA metrics-api scaler)',
  description:
    'Read by the KEDA `metrics-api` scaler with `valueLocation: backlog`. Counts come from BullMQ at request ' +
    "time: the wait list, the prioritized sorted set, the commands held for their tenant's turn, delayed, active and " +
    'failed jobs. Needs the `scaling:read` scope.',
  request: {
    params: z.object({
      queue: z
        .string()
        .min(1)
        .max(100)
        .openapi({ param: { name: 'queue', in: 'path' }, example: 'orders' }),
    }),
  },
  responses: {
    200: { description: 'Depth of the queue', content: { 'application/json': { schema: ScalingSchema } } },
    404: { description: 'No such queue', content: { 'application/problem+json': { schema: ProblemSchema } } },
    401: problemResponses[401],
    403: problemResponses[403],
    429: problemResponses[429],
    503: problemResponses[503],
  },
});

/**
 * `GET /v1/scaling/{queue}`: what a KEDA `metrics-api` trigger polls to size the workers of a queue.
 * @example curl -H 'authorization: Bearer $KEY' http://api:3000/v1/scaling/orders  # {"queue":"orders","backlog":42,…}
 */
export function scalingRoutes(deps: ScalingDeps): OpenAPIHono<ApiEnv> {
  const app = new OpenAPIHono<ApiEnv>();
  app.openapi(scaling, async (c) => {
    const { queue } = c.req.valid('param');
    if (!deps.queues.has(queue)) {
      throw new NotFoundError(`no queue named "${queue}"; known: ${deps.queues.queues.join(', ')}`);
    }
    let stats: QueueStats;
    try {
      stats = await withDeadline(deps.queues.read(queue), deps.timeoutMs);
    } catch {
      throw new DependencyUnavailableError('redis');
    }
    return c.json(stats, 200);
  });
  return app;
}
