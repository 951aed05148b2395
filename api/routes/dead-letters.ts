import { createRoute, OpenAPIHono, z } from '@hono/zod-openapi';
import type { DeadLetterRecord } from '../../shared/dead-letters/dead-letter.ts';
import { NotFoundError } from '../../shared/errors/domain.ts';
import { ValidationError } from '../../shared/errors/domain.ts';
import type { ApiDeps, ApiEnv } from '../context.ts';
import { DeadLetterSchema, ProblemSchema, problemResponses } from '../schemas.ts';

const DeadLetterId = z.string().min(1).max(300).regex(/^[A-Za-z0-9._:-]+$/);

export function toDeadLetterJson(d: DeadLetterRecord) {
  return {
    ...d,
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
      transport: z.enum(['bullmq', 'kafka', 'rabbitmq']).optional(),
      origin: z.string().max(200).optional(),
      orderId: z.string().max(64).optional(),
      limit: z.coerce.number().int().min(1).max(500).default(100),
      cursor: z.string().max(512).optional(),
    }),
  },
  responses: {
    200: {
      description: 'A page of dead letters',
      content: {
        'application/json': { schema: z.object({ deadLetters: z.array(DeadLetterSchema), nextCursor: z.string().nullable() }) },
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
      content: { 'application/json': { schema: z.object({ id: z.string(), status: z.literal('redriven') }) } },
    },
    404: { description: 'No pending dead letter with this id', content: { 'application/problem+json': { schema: ProblemSchema } } },
    ...problemResponses,
  },
});

export function deadLetterRoutes(deps: ApiDeps): OpenAPIHono<ApiEnv> {
  const app = new OpenAPIHono<ApiEnv>();

  app.openapi(list, async (c) => {
    const q = c.req.valid('query');
    let before: { failedAt: string; id: string } | undefined;
    if (q.cursor) {
      try {
        const [failedAt, id] = JSON.parse(Buffer.from(q.cursor, 'base64url').toString('utf8')) as [string, string];
        if (typeof failedAt !== 'string' || typeof id !== 'string' || Number.isNaN(Date.parse(failedAt))) throw new Error();
        before = { failedAt, id };
      } catch {
        throw new ValidationError('invalid cursor', [{ path: 'cursor', message: 'use nextCursor from a previous page' }]);
      }
    }
    const rows = await deps.deadLetters.list({ ...q, limit: q.limit + 1, ...(before ? { before } : {}) });
    const page = rows.slice(0, q.limit);
    const last = page.at(-1);
    const nextCursor =
      rows.length > q.limit && last ? Buffer.from(JSON.stringify([last.failedAt.toISOString(), last.id])).toString('base64url') : null;
    return c.json({ deadLetters: page.map(toDeadLetterJson), nextCursor }, 200);
  });

  app.openapi(redrive, async (c) => {
    const { id } = c.req.valid('param');
    const dl = await deps.deadLetters.get(id);
    if (!dl || dl.status !== 'pending') throw new NotFoundError(`no pending dead letter ${id}`);
    // Claim first so two operators cannot redrive the same message twice.
    if (!(await deps.deadLetters.resolve(id, 'redriven', c.get('principal')))) {
      throw new NotFoundError(`no pending dead letter ${id}`);
    }
    try {
      await deps.redrive(dl);
    } catch (err) {
      await deps.deadLetters.reopen(id);
      throw err;
    }
    c.get('log').info({ deadLetterId: id, transport: dl.transport, origin: dl.origin, orderId: dl.orderId }, 'dead letter redriven');
    return c.json({ id, status: 'redriven' as const }, 202);
  });

  return app;
}
