import type { MiddlewareHandler } from 'hono';
import {
  authenticate,
  DEV_KEY,
  hasScope,
  type ApiKey,
  type Principal,
  type Scope,
} from '../../shared/security/api-keys.ts';
import type { SessionStore } from '../../shared/security/sessions.ts';
import { problem } from '../../shared/errors/problem.ts';
import type { ApiEnv } from '../context.ts';
import { problemResponse } from './errors.ts';

/** Which scope each `/v1` route needs; the first matching rule wins, anything unlisted needs `admin`. */
const POLICY: readonly { method: string; prefix: string; scope: Scope | null }[] = [
  { method: 'POST', prefix: '/v1/orders', scope: 'orders:write' },
  { method: 'GET', prefix: '/v1/orders', scope: 'orders:read' },
  { method: 'GET', prefix: '/v1/customers/', scope: 'orders:read' },
  { method: 'GET', prefix: '/v1/stats', scope: 'orders:read' },
  { method: 'GET', prefix: '/v1/scaling/', scope: 'scaling:read' },
  { method: '*', prefix: '/v1/sessions', scope: null }, // any authenticated caller
];

export function requiredScope(method: string, path: string): Scope | null {
  if (method === 'HEAD') method = 'GET'; // a GET without the body: the same scope
  const rule = POLICY.find(
    (r) => (r.method === '*' || r.method === method) && (path === r.prefix || path.startsWith(r.prefix)),
  );
  return rule ? rule.scope : 'admin';
}

export interface AuthOptions {
  keys: readonly ApiKey[];
  /** Accept the key `dev` with every scope (development with no keys configured). */
  allowDevKey: boolean;
  sessions: SessionStore;
}

const DEV_PRINCIPAL: Principal = { id: DEV_KEY, scopes: ['admin'] };

/**
 * `Authorization: Bearer <key>` (or an `x-session-id` from POST /v1/sessions) → principal and scopes.
 * Missing/invalid → 401, wrong scope → 403; either way nothing reaches the route.
 */
export function auth(options: AuthOptions): MiddlewareHandler<ApiEnv> {
  return async (c, next) => {
    if (c.req.method === 'OPTIONS') return next();
    let principal: Principal | null = null;
    const header = c.req.header('authorization');
    const sessionId = c.req.header('x-session-id');
    if (header !== undefined) {
      const match = /^Bearer ([\x21-\x7e]{1,512})$/i.exec(header);
      const token = match?.[1];
      if (token !== undefined) {
        principal =
          options.allowDevKey && token === DEV_KEY ? DEV_PRINCIPAL : authenticate(options.keys, token);
      }
    } else if (sessionId !== undefined) {
      const session = await options.sessions.get(sessionId);
      if (session) principal = { id: session.principal, scopes: session.scopes as Scope[] };
    }
    if (!principal) {
      return problemResponse(
        c,
        problem(401, 'auth.unauthenticated', 'send a valid API key as "Authorization: Bearer <key>"'),
        {
          'www-authenticate': 'Bearer realm="conveyor"',
        },
      );
    }
    const scope = requiredScope(c.req.method, c.req.path);
    if (scope !== null && !hasScope(principal, scope)) {
      return problemResponse(c, problem(403, 'auth.forbidden', `this key lacks the scope "${scope}"`));
    }
    c.set('principal', principal.id);
    c.set('scopes', principal.scopes);
    c.set('log', undefined); // the request's logger is (re)made with the principal bound
    await next();
  };
}
