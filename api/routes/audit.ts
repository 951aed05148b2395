import { createRoute, OpenAPIHono, z } from '@hono/zod-openapi';
import { createAuditLog, type AuditEntry, type AuditFilter } from '../../shared/audit/audit-log.ts';
import { ValidationError } from '../../shared/errors/domain.ts';
import type { ApiDeps, ApiEnv } from '../../shared/http/context.ts';
import { problemResponses } from '../../shared/http/schemas.ts';

const AuditEntrySchema = z
  .object({
    id: z.string().describe('Monotonic id; also the pagination key'),
    at: z.string(),
    actor: z.string(),
    role: z.string().nullable(),
    source: z.enum(['dashboard', 'api']),
    action: z.string().openapi({ example: 'dead_letter.redrive' }),
    target: z.string().nullable(),
    detail: z.record(z.string(), z.unknown()),
    ip: z.string().nullable(),
    userAgent: z.string().nullable(),
  })
  .openapi('AuditEntry');

const list = createRoute({
  method: 'get',
  path: '/v1/audit',
  tags: ['audit'],
  summary: 'Operator actions (logins, redrives, discards, queue actions), newest first',
  request: {
    query: z.object({
      actor: z.string().min(1).max(200).optional(),
      action: z.string().min(1).max(100).optional().openapi({ example: 'login.failed' }),
      limit: z.coerce.number().int().min(1).max(500).default(100),
      cursor: z.string().max(64).optional().openapi({ description: 'nextCursor of the previous page' }),
    }),
  },
  responses: {
    200: {
      description: 'A page of audit entries',
      content: {
        'application/json': {
          schema: z.object({ entries: z.array(AuditEntrySchema), nextCursor: z.string().nullable() }),
        },
      },
    },
    ...problemResponses,
  },
});

function toJson(e: AuditEntry) {
  return { ...e, id: String(e.id), at: e.at.toISOString() };
}

/** `GET /v1/audit`: the audit log, keyset-paginated by id. */
export function auditRoutes(deps: ApiDeps): OpenAPIHono<ApiEnv> {
  const app = new OpenAPIHono<ApiEnv>();
  // Listing only: the query side's pool (the read replica when configured).
  const listEntries = (filter: AuditFilter) => deps.reads.read((pool) => createAuditLog(pool).list(filter));

  app.openapi(list, async (c) => {
    const q = c.req.valid('query');
    let beforeId: number | undefined;
    if (q.cursor !== undefined) {
      beforeId = Number(Buffer.from(q.cursor, 'base64url').toString('utf8'));
      if (!Number.isSafeInteger(beforeId) || beforeId < 1) {
        throw new ValidationError('invalid cursor', [
          { path: 'cursor', message: 'use nextCursor from a previous page' },
        ]);
      }
    }
    const rows = await listEntries({
      limit: q.limit + 1,
      ...(q.actor ? { actor: q.actor } : {}),
      ...(q.action ? { action: q.action } : {}),
      ...(beforeId ? { beforeId } : {}),
    });
    const page = rows.slice(0, q.limit);
    const last = page.at(-1);
    const nextCursor =
      rows.length > q.limit && last ? Buffer.from(String(last.id)).toString('base64url') : null;
    return c.json({ entries: page.map(toJson), nextCursor }, 200);
  });

  return app;
}
