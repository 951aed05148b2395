import { createRoute, OpenAPIHono, z } from '@hono/zod-openapi';
import { MODULES } from '../../modules/registry.ts';
import { createDeadLetterActions, type ItemResult } from '../../shared/dead-letters/actions.ts';
import type { DeadLetterRecord } from '../../shared/dead-letters/dead-letter.ts';
import {
  DependencyUnavailableError,
  NotFoundError,
  StateConflictError,
  ValidationError,
} from '../../shared/errors/domain.ts';
import type { ApiDeps, ApiEnv } from '../../shared/http/context.ts';
import { apiActor } from './audit-actor.ts';
import { DeadLetterSchema, ProblemSchema, problemResponses } from '../../shared/http/schemas.ts';

const DeadLetterId = z
  .string()
  .min(1)
  .max(300)
  .regex(/^[A-Za-z0-9._:-]+$/);

export function toDeadLetterJson(d: DeadLetterRecord) {
  return {
    ...d,
    orderId: d.subjectId,
    payload: d.payload.toString('utf8'),
    firstFailedAt: d.firstFailedAt?.toISOString() ?? null,
    failedAt: d.failedAt.toISOString(),
  };
}

const list = createRoute({
  method: 'get',
  path: '/v1/dead-letters',
  tags: ['dead letters'],
  summary: 'Dead letters of every transport, newest first',
  request: {
    query: z.object({
      status: z.enum(['pending', 'redriven', 'discarded']).default('pending'),
      transport: z.enum(['bullmq', 'kafka', 'rabbitmq', 'sqs']).optional(),
      origin: z.string().max(200).optional(),
      subjectId: z.string().max(64).optional(),
      orderId: z.string().max(64).optional().openapi({ deprecated: true, description: 'Same as subjectId' }),
      limit: z.coerce.number().int().min(1).max(500).default(100),
      cursor: z.string().max(512).optional(),
    }),
  },
  responses: {
    200: {
      description: 'A page of dead letters',
      content: {
        'application/json': {
          schema: z.object({ deadLetters: z.array(DeadLetterSchema), nextCursor: z.string().nullable() }),
        },
      },
    },
    ...problemResponses,
  },
});

const redrive = createRoute({
  method: 'post',
  path: '/v1/dead-letters/{id}/redrive',
  tags: ['dead letters'],
  summary: 'Send one dead letter back to its origin queue or topic',
  request: { params: z.object({ id: DeadLetterId.openapi({ param: { name: 'id', in: 'path' } }) }) },
  responses: {
    202: {
      description: 'Sent back to its origin',
      content: {
        'application/json': { schema: z.object({ id: z.string(), status: z.literal('redriven') }) },
      },
    },
    404: {
      description: 'No dead letter with this id',
      content: { 'application/problem+json': { schema: ProblemSchema } },
    },
    409: {
      description: 'The dead letter was already handled (redriven or discarded): nothing done',
      content: { 'application/problem+json': { schema: ProblemSchema } },
    },
    ...problemResponses,
  },
});

const discard = createRoute({
  method: 'post',
  path: '/v1/dead-letters/{id}/discard',
  tags: ['dead letters'],
  summary: 'Discard one dead letter: it is kept for the record but never redriven',
  request: {
    params: z.object({ id: DeadLetterId.openapi({ param: { name: 'id', in: 'path' } }) }),
    body: {
      required: false,
      content: { 'application/json': { schema: z.strictObject({ reason: z.string().max(500).optional() }) } },
    },
  },
  responses: {
    200: {
      description: 'Discarded',
      content: {
        'application/json': { schema: z.object({ id: z.string(), status: z.literal('discarded') }) },
      },
    },
    404: {
      description: 'No dead letter with this id',
      content: { 'application/problem+json': { schema: ProblemSchema } },
    },
    409: {
      description: 'The dead letter was already handled (redriven or discarded): nothing done',
      content: { 'application/problem+json': { schema: ProblemSchema } },
    },
    ...problemResponses,
  },
});

const ItemResultSchema = z
  .object({
    id: z.string(),
    status: z.enum(['redriven', 'discarded', 'not_found', 'not_pending', 'skipped', 'failed']),
    error: z.string().optional(),
    handled: z
      .enum(['redriven', 'discarded'])
      .optional()
      .describe('How a `not_pending` dead letter was already handled'),
  })
  .openapi('DeadLetterActionResult');

const redriveMany = createRoute({
  method: 'post',
  path: '/v1/dead-letters/redrive',
  tags: ['dead letters'],
  summary: 'Send many pending dead letters back to their origins (oldest first)',
  description:
    'Selects pending dead letters matching every given criterion. With `ids`, answers one result per id ' +
    '(`not_found`, `not_pending`, or `skipped` when pending but outside the filter or the limit).',
  request: {
    body: {
      required: true,
      content: {
        'application/json': {
          schema: z.strictObject({
            transport: z.enum(['bullmq', 'kafka', 'rabbitmq', 'sqs']).optional(),
            origin: z.string().min(1).max(200).optional(),
            subjectId: z.string().min(1).max(64).optional(),
            orderId: z
              .string()
              .min(1)
              .max(64)
              .optional()
              .openapi({ deprecated: true, description: 'Same as subjectId' }),
            ids: z.array(DeadLetterId).min(1).max(1_000).optional(),
            limit: z.number().int().min(1).max(1_000).default(100),
          }),
        },
      },
    },
  },
  responses: {
    200: {
      description: 'One result per dead letter',
      content: {
        'application/json': { schema: z.object({ batchId: z.uuid(), results: z.array(ItemResultSchema) }) },
      },
    },
    ...problemResponses,
  },
});

/** Why a single action did nothing: 404 for an id no dead letter has, 409 for one already handled. */
function notActionable(result: ItemResult): Error {
  if (result.status === 'not_pending') {
    return new StateConflictError(
      'dead_letter.not_pending',
      `dead letter ${result.id} was already ${result.handled ?? 'handled'}: nothing done`,
    );
  }
  return new NotFoundError(`no dead letter ${result.id}`);
}

export function deadLetterRoutes(deps: ApiDeps): OpenAPIHono<ApiEnv> {
  const app = new OpenAPIHono<ApiEnv>();
  const actions = createDeadLetterActions({
    pool: deps.pool,
    redis: deps.redis,
    queuePrefix: deps.config.redis.queuePrefix,
    redrive: deps.redrive,
    modules: MODULES,
    logger: deps.logger,
  });

  app.openapi(list, async (c) => {
    const q = c.req.valid('query');
    let before: { failedAt: string; id: string } | undefined;
    if (q.cursor) {
      try {
        const [failedAt, id] = JSON.parse(Buffer.from(q.cursor, 'base64url').toString('utf8')) as [
          string,
          string,
        ];
        if (typeof failedAt !== 'string' || typeof id !== 'string' || Number.isNaN(Date.parse(failedAt)))
          throw new Error();
        before = { failedAt, id };
      } catch {
        throw new ValidationError('invalid cursor', [
          { path: 'cursor', message: 'use nextCursor from a previous page' },
        ]);
      }
    }
    const { orderId, subjectId, ...rest } = q;
    const subject = subjectId ?? orderId;
    const rows = await deps.deadLetters.list({
      ...rest,
      ...(subject ? { subjectId: subject } : {}),
      limit: q.limit + 1,
      ...(before ? { before } : {}),
    });
    const page = rows.slice(0, q.limit);
    const last = page.at(-1);
    const nextCursor =
      rows.length > q.limit && last
        ? Buffer.from(JSON.stringify([last.failedAt.toISOString(), last.id])).toString('base64url')
        : null;
    return c.json({ deadLetters: page.map(toDeadLetterJson), nextCursor }, 200);
  });

  app.openapi(redrive, async (c) => {
    const { id } = c.req.valid('param');
    const result = await actions.redrive(id, apiActor(c));
    if (result.status === 'failed') throw new DependencyUnavailableError(`the origin of dead letter ${id}`);
    if (result.status !== 'redriven') throw notActionable(result);
    return c.json({ id, status: 'redriven' as const }, 202);
  });

  app.openapi(discard, async (c) => {
    const { id } = c.req.valid('param');
    // The body is optional: without a JSON content type the validated body is `{}`.
    const body = c.req.valid('json');
    const result = await actions.discard(id, apiActor(c), body.reason);
    if (result.status !== 'discarded') throw notActionable(result);
    return c.json({ id, status: 'discarded' as const }, 200);
  });

  app.openapi(redriveMany, async (c) => {
    const body = c.req.valid('json');
    return c.json(await actions.redriveMany(body, apiActor(c)), 200);
  });

  return app;
}
