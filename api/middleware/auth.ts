import type { MiddlewareHandler } from 'hono';
import {
  DEV_KEY,
  hasScope,
  keyWithDigest,
  sha256,
  type ApiKey,
  type Principal,
  type Scope,
} from '../../shared/security/api-keys.ts';
import { credentialOf, type ApiSessionStore } from '../../shared/http/sessions.ts';
import type { ModuleDefinition } from '../../shared/modules/module.ts';
import { MODULES } from '../../modules/registry.ts';
import { problem } from '../../shared/errors/problem.ts';
import type { TenantDirectory } from '../../shared/fairness/tenants.ts';
import type { ApiEnv } from '../../shared/http/context.ts';
import { problemResponse } from '../../shared/http/errors.ts';

/** What a rule asks of a request's method: a query (GET, HEAD), a command (anything else), or either. */
type Access = 'read' | 'write' | 'any';

/** One rule of the scope policy: requests of `access` on `pattern` or below need `scope` (null: any caller). */
export interface ScopeRule {
  access: Access;
  /** A path prefix, segment by segment; a `:name` segment matches any one segment. */
  pattern: string;
  scope: Scope | null;
  /** Who declared it: `core` or a module's name (for error messages and tests). */
  owner: string;
}

/** The core's own routes under `/v1`; dead letters, audit and anything unclaimed need `admin`. */
const CORE_RULES: readonly ScopeRule[] = [
  { access: 'read', pattern: '/v1/scaling', scope: 'scaling:read', owner: 'core' },
  { access: 'any', pattern: '/v1/sessions', scope: null, owner: 'core' }, // any authenticated caller
  // Any key: the route answers 404 unless the batch is the caller's and the key holds its module's read scope.
  { access: 'read', pattern: '/v1/batches', scope: null, owner: 'core' },
];

const segments = (path: string) => path.split('/').filter(Boolean);

/**
 * The scope policy of the core's routes and every module's: each module's `paths` need its `scopes`
 * (`read` for GET/HEAD, `write` for the other methods). The most specific matching rule wins: more
 * segments, then more literal segments; anything no rule claims needs `admin`.
 * @throws {Error} when two modules claim the same path pattern with different scopes.
 */
export function scopePolicy(
  modules: readonly Pick<ModuleDefinition, 'name' | 'scopes' | 'paths'>[] = MODULES,
): readonly ScopeRule[] {
  const rules: ScopeRule[] = [...CORE_RULES];
  const claimed = new Map<string, ScopeRule>();
  for (const m of modules) {
    for (const path of m.paths) {
      if (!path.startsWith('/v1/')) throw new Error(`module ${m.name}: path ${path} is not under /v1/`);
      const pattern = `/${segments(path).join('/')}`;
      const shape = segments(pattern)
        .map((s) => (s.startsWith(':') ? ':' : s))
        .join('/');
      for (const access of ['read', 'write'] as const) {
        const rule: ScopeRule = { access, pattern, scope: m.scopes[access], owner: m.name };
        const other = claimed.get(`${access} ${shape}`);
        if (other && other.scope !== rule.scope)
          throw new Error(
            `modules ${other.owner} and ${m.name} both claim ${pattern} with different ${access} scopes`,
          );
        claimed.set(`${access} ${shape}`, rule);
        rules.push(rule);
      }
    }
  }
  return rules;
}

/** How well `pattern` matches `path`: null when it does not; else more segments, then more literals, is better. */
function specificity(pattern: string, path: readonly string[]): [number, number] | null {
  const want = segments(pattern);
  if (want.length > path.length) return null;
  let literals = 0;
  for (const [i, w] of want.entries()) {
    if (w.startsWith(':')) continue;
    if (w !== path[i]) return null;
    literals += 1;
  }
  return [want.length, literals];
}

let defaultPolicy: readonly ScopeRule[] | undefined;

/** The scope a `/v1` request needs under `policy` (the registry's by default); null: any authenticated caller. */
export function requiredScope(
  method: string,
  path: string,
  policy: readonly ScopeRule[] = (defaultPolicy ??= scopePolicy()),
): Scope | null {
  const access = method === 'GET' || method === 'HEAD' ? 'read' : 'write'; // HEAD: a GET without its body
  const parts = segments(path);
  let best: { rule: ScopeRule; rank: [number, number] } | undefined;
  for (const rule of policy) {
    if (rule.access !== 'any' && rule.access !== access) continue;
    const rank = specificity(rule.pattern, parts);
    if (!rank) continue;
    if (!best || rank[0] > best.rank[0] || (rank[0] === best.rank[0] && rank[1] > best.rank[1]))
      best = { rule, rank };
  }
  return best ? best.rule.scope : 'admin';
}

export interface AuthOptions {
  keys: readonly ApiKey[];
  /** Accept the key `dev` with every scope (development with no keys configured). */
  allowDevKey: boolean;
  sessions: ApiSessionStore;
  /** Which scope each route needs. @defaultValue the registry's ({@link scopePolicy}) */
  policy?: readonly ScopeRule[];
  /** Each request's tenant, for fairness: its key's, or the sub-tenant `Conveyor-Tenant` names (`TENANTS`). */
  tenants: TenantDirectory;
}

/** The header a key allowed sub-tenants (`TENANTS: <key>:sub_tenants=on`) names the one a request is for with. */
export const TENANT_HEADER = 'conveyor-tenant';

const DEV_PRINCIPAL: Principal = { id: DEV_KEY, scopes: ['admin'] };

/** Most (method, path) pairs whose required scope one auth middleware remembers. */
const SCOPE_CACHE_SIZE = 1_024;
/** Longer paths are looked up in the policy every time (so the cache stays small whatever is sent). */
const SCOPE_CACHE_MAX_PATH = 256;

/**
 * `Authorization: Bearer <key>` (or an `x-session-id` from POST /v1/sessions) → principal and scopes.
 * A session carries no scopes of its own: it names the key that opened it, and each request takes that
 * key's scopes as configured now — a key no longer in `API_KEYS` (a revoked one, or the old key of a
 * rotated id) fails its sessions with 401, a key whose scopes shrank gets 403 where it lost them.
 * Missing/invalid → 401, wrong scope → 403; either way nothing reaches the route.
 * Then the request's tenant (`c.get('tenant')`): the key's id, or `<key id>/<sub>` from a
 * `Conveyor-Tenant: <sub>` header when the key may name sub-tenants — 400 `tenant.invalid` for a
 * malformed one, 403 `tenant.forbidden` when the key may not. The development key's tenant is `dev`.
 */
export function auth(options: AuthOptions): MiddlewareHandler<ApiEnv> {
  const policy = options.policy ?? scopePolicy();
  // The keys accepted now, by the credential their sessions name (and by their hash, for bearers).
  const byCredential = new Map<string, Principal>();
  // Each configured key's principal and credential, made once: a bearer request hashes its token
  // once (to find its key) and allocates neither.
  const byKey = new Map<ApiKey, { principal: Principal; credential: string }>();
  for (const k of options.keys) {
    const principal: Principal = { id: k.id, scopes: k.scopes };
    const credential = credentialOf(k.sha256);
    if (!byCredential.has(credential)) byCredential.set(credential, principal); // first entry wins, as for bearers
    byKey.set(k, { principal, credential });
  }
  const devCredential = credentialOf(sha256(DEV_KEY));
  if (options.allowDevKey && !byCredential.has(devCredential)) byCredential.set(devCredential, DEV_PRINCIPAL);
  // The policy's answer per method and path, remembered: every POST /v1/orders asks the same
  // question. Bounded (paths carry ids): cleared when full, and long paths are not kept.
  const scopes = new Map<string, Scope | null>();
  const scopeOf = (method: string, path: string): Scope | null => {
    if (path.length > SCOPE_CACHE_MAX_PATH) return requiredScope(method, path, policy);
    const key = `${method} ${path}`;
    let scope = scopes.get(key);
    if (scope === undefined) {
      if (scopes.size >= SCOPE_CACHE_SIZE) scopes.clear();
      scopes.set(key, (scope = requiredScope(method, path, policy)));
    }
    return scope;
  };
  return async (c, next) => {
    if (c.req.method === 'OPTIONS') return next();
    let principal: Principal | null = null;
    let credential: string | undefined;
    const header = c.req.header('authorization');
    const sessionId = c.req.header('x-session-id');
    if (header !== undefined) {
      const match = /^Bearer ([\x21-\x7e]{1,512})$/i.exec(header);
      const token = match?.[1];
      if (token !== undefined) {
        if (options.allowDevKey && token === DEV_KEY) {
          principal = DEV_PRINCIPAL;
          credential = devCredential;
        } else {
          const key = keyWithDigest(options.keys, sha256(token));
          const known = key ? byKey.get(key) : undefined;
          if (known) ({ principal, credential } = known);
        }
      }
    } else if (sessionId !== undefined) {
      const session = await options.sessions.get(sessionId);
      const current = session ? byCredential.get(session.credential) : undefined;
      if (session && current?.id === session.principal) {
        principal = current;
        credential = session.credential;
      }
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
    const scope = scopeOf(c.req.method, c.req.path);
    if (scope !== null && !hasScope(principal, scope)) {
      return problemResponse(c, problem(403, 'auth.forbidden', `this key lacks the scope "${scope}"`));
    }
    const tenant = options.tenants.resolve(principal.id, c.req.header(TENANT_HEADER));
    if ('error' in tenant) {
      const code = tenant.status === 400 ? 'tenant.invalid' : 'tenant.forbidden';
      return problemResponse(c, problem(tenant.status, code, tenant.error));
    }
    c.set('principal', principal.id);
    c.set('tenant', tenant);
    c.set('scopes', principal.scopes);
    c.set('credential', credential);
    c.set('log', undefined); // the request's logger is (re)made with the principal bound
    await next();
  };
}
