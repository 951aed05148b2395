import { createRoute, OpenAPIHono, z } from '@hono/zod-openapi';
import type { ApiDeps, ApiEnv } from '../../shared/http/context.ts';
import { ProblemSchema, tooManyRequests } from '../../shared/http/schemas.ts';
import { requestLog } from '../../shared/http/log.ts';

const create = createRoute({
  method: 'post',
  path: '/v1/sessions',
  tags: ['auth'],
  summary: 'Open a session for the calling API key; send its id as x-session-id afterwards',
  responses: {
    201: {
      description:
        "A session stored in Redis with a TTL, under the SHA-256 of its id; it holds the key's scopes as configured now, and ends when the key is removed",
      content: {
        'application/json': {
          schema: z.object({ sessionId: z.string(), expiresInSeconds: z.number().int() }),
        },
      },
    },
    401: { description: 'No valid key', content: { 'application/problem+json': { schema: ProblemSchema } } },
    429: tooManyRequests,
  },
});

const destroy = createRoute({
  method: 'delete',
  path: '/v1/sessions/current',
  tags: ['auth'],
  summary: 'Log out: delete the session named by x-session-id',
  responses: { 204: { description: 'Deleted' }, 429: tooManyRequests },
});

/**
 * Sessions live in Redis only: any replica serves any session, logout is immediate everywhere. A
 * session names the key that opened it (its credential), never its scopes: auth looks the key up on
 * every request.
 */
export function sessionRoutes(deps: ApiDeps): OpenAPIHono<ApiEnv> {
  const app = new OpenAPIHono<ApiEnv>();
  app.openapi(create, async (c) => {
    const credential = c.get('credential');
    // Auth names the key of every request it admits: without one this route is mounted wrong.
    if (credential === undefined) throw new Error('no API key behind this request to bind a session to');
    const session = await deps.sessions.create({ principal: c.get('principal'), credential });
    requestLog(c).info('session opened');
    return c.json({ sessionId: session.id, expiresInSeconds: session.expiresInSeconds }, 201);
  });
  app.openapi(destroy, async (c) => {
    const id = c.req.header('x-session-id');
    if (id) await deps.sessions.destroy(id);
    return c.body(null, 204);
  });
  return app;
}
