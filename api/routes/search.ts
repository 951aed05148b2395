import { createRoute, OpenAPIHono, z } from '@hono/zod-openapi';
import type { ModuleDefinition } from '../../shared/modules/module.ts';
import { MODULES } from '../../modules/registry.ts';
import { DomainError, ValidationError } from '../../shared/errors/domain.ts';
import { fieldErrors } from '../../shared/errors/problem.ts';
import { CommandStatus, SearchQuerySchema, type SearchQuery } from '../../shared/search/query.ts';
import {
  SEARCH_MAX_LIMIT,
  type CommandSearchService,
  type SearchAccess,
} from '../../shared/search/search.ts';
import { SEARCH_SOURCES } from '../../shared/search/sources.ts';
import { hasScope } from '../../shared/security/api-keys.ts';
import type { ApiEnv } from '../../shared/http/context.ts';
import type { ScopeRule } from '../middleware/auth.ts';
import { problemResponses } from '../../shared/http/schemas.ts';

/**
 * `GET /v1/commands` is open to any authenticated key at the edge: the route itself answers an admin
 * with everything, a key holding a module's read scope with its own commands of those modules, and
 * anyone else 403 (add it to the auth middleware's policy: `auth({ policy: [...scopePolicy(), SEARCH_SCOPE_RULE] })`).
 */
export const SEARCH_SCOPE_RULE: ScopeRule = {
  access: 'read',
  pattern: '/v1/commands',
  scope: null,
  owner: 'core',
};

/** 403 for a search beyond what the key may read. */
export class SearchForbiddenError extends DomainError {
  readonly code = 'auth.forbidden';
  readonly status = 403;
}

const Text = z.string().trim().min(1).max(200);

const SearchParams = z
  .object({
    module: Text.optional().openapi({ description: 'A module name (orders, refunds); absent: every module' }),
    status: z
      .string()
      .max(200)
      .optional()
      .openapi({
        description: `Any of, comma-separated: ${CommandStatus.options.join(', ')}`,
        example: 'rejected,dead_lettered',
      }),
    tenant: Text.optional().openapi({ description: 'Who it was for: a key id, or <key id>/<sub-tenant>' }),
    apiKey: Text.optional().openapi({ description: 'The id of the API key that sent it' }),
    subject: Text.optional().openapi({
      description: 'What it is about: the customer of an order, the order of a refund',
    }),
    from: z.iso
      .datetime({ offset: true })
      .optional()
      .openapi({ description: 'Accepted at or after (ISO 8601)' }),
    to: z.iso.datetime({ offset: true }).optional().openapi({ description: 'Accepted before (ISO 8601)' }),
    correlationId: Text.optional(),
    traceId: z
      .string()
      .regex(/^[0-9a-fA-F]{32}$/, '32 hex digits (the W3C trace id)')
      .optional()
      .openapi({
        description: 'W3C trace id: commands whose events are still in the outbox (OUTBOX_RETENTION_HOURS)',
      }),
    errorCode: Text.optional().openapi({
      description: 'The start of its error: a rejection code or reason, a dead letter’s error',
      example: 'payment declined',
    }),
    cursor: z.string().max(512).optional().openapi({ description: 'nextCursor of the previous page' }),
    limit: z.coerce.number().int().min(1).max(SEARCH_MAX_LIMIT).default(50),
  })
  .strict();

export const CommandSummarySchema = z
  .object({
    module: z.string(),
    id: z.string(),
    status: CommandStatus,
    tenant: z.string().nullable(),
    apiKey: z.string().nullable(),
    subject: z.string().nullable(),
    correlationId: z.string().nullable(),
    traceId: z.string().nullable(),
    errorCode: z.string().nullable(),
    acceptedAt: z.string().nullable(),
    decidedAt: z.string().nullable(),
  })
  .openapi('CommandSummary');

const search = createRoute({
  method: 'get',
  path: '/v1/commands',
  tags: ['search'],
  summary: "Search every module's commands, newest first",
  description:
    'Decided commands from the write models (on the read replica when one is configured) and pending ones ' +
    '(`queued`, `processing`) from the queues, in one order: accepted time descending, then module, then id. ' +
    'Every filter given must match. Follow `nextCursor` for the next page: a command is never repeated or ' +
    'skipped across pages while others are accepted or decided. An admin key sees every command; a key with ' +
    "a module's read scope sees its own commands of those modules (apiKey is its own id).",
  request: { query: SearchParams },
  responses: {
    200: {
      description: 'A page of commands',
      content: {
        'application/json': {
          schema: z.object({ commands: z.array(CommandSummarySchema), nextCursor: z.string().nullable() }),
        },
      },
    },
    ...problemResponses,
  },
});

/** The search query of the request's parameters. @throws {ValidationError} naming each bad filter. */
export function searchQueryOf(params: z.infer<typeof SearchParams>): SearchQuery {
  const { cursor: _c, limit: _l, status, ...rest } = params;
  const parsed = SearchQuerySchema.safeParse({
    ...rest,
    ...(status
      ? {
          status: status
            .split(',')
            .map((s) => s.trim())
            .filter(Boolean),
        }
      : {}),
  });
  if (!parsed.success) throw new ValidationError('invalid search filter', fieldErrors(parsed.error.issues));
  return parsed.data;
}

/**
 * What a caller may search: everything for `admin`; else its own commands (apiKey forced to its id) of
 * the modules whose read scope it holds. Null: nothing (403).
 */
export function accessOf(
  principal: { id: string; scopes: readonly string[] },
  modules: readonly Pick<ModuleDefinition, 'name' | 'scopes'>[] = MODULES,
): { access: SearchAccess; apiKey?: string } | null {
  if (principal.scopes.includes('admin')) return { access: {} };
  const readable = modules
    .filter((m) => SEARCH_SOURCES.has(m.name) && hasScope(principal, m.scopes.read))
    .map((m) => m.name);
  if (readable.length === 0) return null;
  return { access: { modules: readable }, apiKey: principal.id };
}

export function searchRoutes(service: CommandSearchService): OpenAPIHono<ApiEnv> {
  const app = new OpenAPIHono<ApiEnv>();
  app.openapi(search, async (c) => {
    const params = c.req.valid('query');
    const query = searchQueryOf(params);
    const allowed = accessOf({ id: c.get('principal'), scopes: c.get('scopes') });
    if (!allowed) throw new SearchForbiddenError("this key holds no module's read scope");
    if (allowed.apiKey !== undefined) {
      if (query.apiKey !== undefined && query.apiKey !== allowed.apiKey)
        throw new SearchForbiddenError(
          "a producer key searches its own commands only: apiKey must be this key's id",
        );
      query.apiKey = allowed.apiKey;
      if (query.module !== undefined && !allowed.access.modules?.includes(query.module))
        throw new SearchForbiddenError(`this key lacks the read scope of module ${query.module}`);
    }
    const page = await service.search(
      query,
      { limit: params.limit, ...(params.cursor ? { cursor: params.cursor } : {}) },
      allowed.access,
    );
    return c.json({ commands: page.items, nextCursor: page.nextCursor }, 200);
  });
  return app;
}
