import { createRoute, OpenAPIHono, z } from '@hono/zod-openapi';
import { MODULES } from '../../modules/registry.ts';
import { BulkConfirmationError, createBulkActions, queryJson } from '../../shared/bulk/service.ts';
import { itemsPerSecond } from '../../shared/bulk/runner.ts';
import type { BulkActionRecord } from '../../shared/bulk/store.ts';
import { ValidationError } from '../../shared/errors/domain.ts';
import { problem, type Problem } from '../../shared/errors/problem.ts';
import { createCommandSearch } from '../../shared/search/search.ts';
import { CommandStatus, SearchQuerySchema, type CommandSearch } from '../../shared/search/query.ts';
import type { ApiDeps, ApiEnv } from '../../shared/http/context.ts';
import { apiActor } from './audit-actor.ts';
import { problemResponse } from '../../shared/http/errors.ts';
import { ProblemSchema, problemResponses } from '../../shared/http/schemas.ts';

/** A search query as JSON (times as ISO 8601 strings): what a bulk action selects. */
const QueryJson = z
  .strictObject({
    module: z.string().min(1).max(100).optional(),
    status: z.array(z.enum(CommandStatus.options)).max(6).optional(),
    tenant: z.string().min(1).max(200).optional(),
    apiKey: z.string().min(1).max(200).optional(),
    subject: z.string().min(1).max(200).optional(),
    from: z.iso.datetime({ offset: true }).optional().openapi({ description: 'Inclusive' }),
    to: z.iso.datetime({ offset: true }).optional().openapi({ description: 'Exclusive' }),
    correlationId: z.string().min(1).max(200).optional(),
    traceId: z.string().min(1).max(64).optional(),
    errorCode: z.string().min(1).max(200).optional(),
  })
  .openapi('BulkQuery', {
    description:
      'The search query (as in the command search). A redrive selects pending dead letters of commands: only module, ' +
      'subject, correlationId and from/to (on the time the command failed), status absent or [dead_lettered]. ' +
      'A cancel selects commands not yet decided (status queued or processing; absent: both). ' +
      'A replay selects decided commands that did not succeed (status rejected or dead_lettered; absent: both) and ' +
      'posts each again as a new command (same payload, tenant and correlation id, a new id, `replayOf` naming it).',
  });

const Action = z.enum(['redrive', 'cancel', 'replay']);

const BulkActionSchema = z
  .object({
    id: z.uuid(),
    action: Action,
    query: z.record(z.string(), z.unknown()),
    status: z.enum(['queued', 'running', 'completed', 'failed', 'cancelled']),
    expected: z.number().int().describe('The count the operator confirmed'),
    selected: z.number().int().describe('Items frozen into the selection so far'),
    touched: z.number().int(),
    succeeded: z.number().int(),
    skipped: z.number().int().describe('Nothing to do any more: gone, already handled or decided'),
    failed: z.number().int(),
    cancelRequested: z.boolean(),
    ratePerSecond: z.number().int().nullable().describe("The limit; null: the runner's default"),
    itemsPerSecond: z.number().nullable().describe('Measured since acting began'),
    error: z.string().nullable(),
    createdBy: z.string(),
    createdAt: z.string(),
    startedAt: z.string().nullable(),
    finishedAt: z.string().nullable(),
  })
  .openapi('BulkAction');

const problem409 = {
  description: 'The confirmation does not hold (token or count): `count` is the fresh count',
  content: {
    'application/problem+json': { schema: ProblemSchema.extend({ count: z.number().int().optional() }) },
  },
};

const dryRun = createRoute({
  method: 'post',
  path: '/v1/bulk-actions/dry-run',
  tags: ['bulk actions'],
  summary: 'Count what a bulk action would touch, and a token to confirm it with',
  request: {
    body: {
      required: true,
      content: { 'application/json': { schema: z.strictObject({ action: Action, query: QueryJson }) } },
    },
  },
  responses: {
    200: {
      description: 'The count and a token (valid for minutes) binding action, query and count',
      content: {
        'application/json': {
          schema: z.object({
            action: Action,
            query: z.record(z.string(), z.unknown()),
            count: z.number().int(),
            token: z.string(),
          }),
        },
      },
    },
    ...problemResponses,
  },
});

const start = createRoute({
  method: 'post',
  path: '/v1/bulk-actions',
  tags: ['bulk actions'],
  summary: 'Start a bulk action confirmed with the dry run’s count and token',
  request: {
    body: {
      required: true,
      content: {
        'application/json': {
          schema: z.strictObject({
            action: Action,
            query: QueryJson,
            confirmCount: z.number().int().min(0),
            token: z.string().min(1).max(200),
            ratePerSecond: z.number().int().min(1).max(100_000).optional().openapi({
              description: "Items per second; absent: the runner's default (BULK_RATE_PER_SECOND)",
            }),
          }),
        },
      },
    },
  },
  responses: {
    202: {
      description: 'Queued for the workers’ bulk runner; Location names it',
      content: {
        'application/json': {
          schema: z.object({ id: z.uuid(), status: z.literal('queued'), expected: z.number().int() }),
        },
      },
    },
    409: problem409,
    ...problemResponses,
  },
});

const IdParam = z.object({ id: z.uuid().openapi({ param: { name: 'id', in: 'path' } }) });

const getOne = createRoute({
  method: 'get',
  path: '/v1/bulk-actions/{id}',
  tags: ['bulk actions'],
  summary: 'A bulk action and its progress',
  request: { params: IdParam },
  responses: {
    200: { description: 'The bulk action', content: { 'application/json': { schema: BulkActionSchema } } },
    404: {
      description: 'No such bulk action',
      content: { 'application/problem+json': { schema: ProblemSchema } },
    },
    ...problemResponses,
  },
});

const list = createRoute({
  method: 'get',
  path: '/v1/bulk-actions',
  tags: ['bulk actions'],
  summary: 'Bulk actions, newest first',
  request: {
    query: z.object({
      limit: z.coerce.number().int().min(1).max(200).default(50),
      cursor: z.string().max(200).optional(),
    }),
  },
  responses: {
    200: {
      description: 'A page of bulk actions',
      content: {
        'application/json': {
          schema: z.object({ bulkActions: z.array(BulkActionSchema), nextCursor: z.string().nullable() }),
        },
      },
    },
    ...problemResponses,
  },
});

const cancel = createRoute({
  method: 'post',
  path: '/v1/bulk-actions/{id}/cancel',
  tags: ['bulk actions'],
  summary: 'Stop a queued or running bulk action (what it did stays done)',
  request: { params: IdParam },
  responses: {
    202: {
      description: 'Cancelled, or (running) its runner stops after the items in hand',
      content: { 'application/json': { schema: BulkActionSchema } },
    },
    404: {
      description: 'No such bulk action',
      content: { 'application/problem+json': { schema: ProblemSchema } },
    },
    409: {
      description: 'Already finished',
      content: { 'application/problem+json': { schema: ProblemSchema } },
    },
    ...problemResponses,
  },
});

export function toBulkActionJson(a: BulkActionRecord) {
  return {
    id: a.id,
    action: a.action,
    query: queryJson(a.query),
    status: a.status,
    expected: a.expected,
    selected: a.selected,
    touched: a.touched,
    succeeded: a.succeeded,
    skipped: a.skipped,
    failed: a.failed,
    cancelRequested: a.cancelRequestedAt !== null,
    ratePerSecond: a.ratePerSecond,
    itemsPerSecond: itemsPerSecond(a),
    error: a.error,
    createdBy: a.createdBy.actor,
    createdAt: a.createdAt.toISOString(),
    startedAt: a.startedAt?.toISOString() ?? null,
    finishedAt: a.finishedAt?.toISOString() ?? null,
  };
}

export interface BulkRoutesOptions {
  /** @defaultValue the command search on the primary (a selection must see rows as they are now) */
  search?: CommandSearch;
}

/**
 * `/v1/bulk-actions`: dry run, start, progress, list, cancel (admin scope: no rule claims the path).
 * The work is done by the workers' bulk runner (shared/bulk/runner.ts).
 */
export function bulkRoutes(deps: ApiDeps, options: BulkRoutesOptions = {}): OpenAPIHono<ApiEnv> {
  const app = new OpenAPIHono<ApiEnv>();
  const search =
    options.search ??
    createCommandSearch({
      reads: { read: (fn) => fn(deps.pool) },
      redis: deps.redis,
      queuePrefix: deps.config.redis.queuePrefix,
      queueOf: (module) => deps.commandQueues.get(module)?.queue,
    });
  const bulk = createBulkActions({
    pool: deps.pool,
    redis: deps.redis,
    queuePrefix: deps.config.redis.queuePrefix,
    search,
    modules: MODULES,
  });

  app.openapi(dryRun, async (c) => {
    const body = c.req.valid('json');
    const result = await bulk.dryRun(body.action, SearchQuerySchema.parse(body.query));
    return c.json({ ...result, query: queryJson(result.query) }, 200);
  });

  app.openapi(start, async (c) => {
    const body = c.req.valid('json');
    try {
      const a = await bulk.start(
        { ...body, query: SearchQuerySchema.parse(body.query), ratePerSecond: body.ratePerSecond },
        apiActor(c),
      );
      c.header('location', `/v1/bulk-actions/${a.id}`);
      return c.json({ id: a.id, status: 'queued' as const, expected: a.expected }, 202);
    } catch (err) {
      if (!(err instanceof BulkConfirmationError)) throw err;
      const p: Problem = Object.assign(problem(409, err.code, err.message), { count: err.count });
      return problemResponse(c, p) as never;
    }
  });

  app.openapi(getOne, async (c) => c.json(toBulkActionJson(await bulk.get(c.req.valid('param').id)), 200));

  app.openapi(list, async (c) => {
    const q = c.req.valid('query');
    let before: { createdAt: string; id: string } | undefined;
    if (q.cursor) {
      try {
        const [createdAt, id] = JSON.parse(Buffer.from(q.cursor, 'base64url').toString('utf8')) as [
          string,
          string,
        ];
        if (typeof createdAt !== 'string' || typeof id !== 'string' || Number.isNaN(Date.parse(createdAt)))
          throw new Error();
        before = { createdAt, id };
      } catch {
        throw new ValidationError('invalid cursor', [
          { path: 'cursor', message: 'use nextCursor from a previous page' },
        ]);
      }
    }
    const rows = await bulk.list(q.limit + 1, before);
    const page = rows.slice(0, q.limit);
    const last = page.at(-1);
    const nextCursor =
      rows.length > q.limit && last
        ? Buffer.from(JSON.stringify([last.createdAt.toISOString(), last.id])).toString('base64url')
        : null;
    return c.json({ bulkActions: page.map(toBulkActionJson), nextCursor }, 200);
  });

  app.openapi(cancel, async (c) =>
    c.json(toBulkActionJson(await bulk.cancel(c.req.valid('param').id, apiActor(c))), 202),
  );

  return app;
}
