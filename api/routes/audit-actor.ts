import { getConnInfo } from '@hono/node-server/conninfo';
import type { Context } from 'hono';
import type { AuditActor } from '../../shared/audit/audit-log.ts';
import type { ApiEnv } from '../../shared/http/context.ts';

/** Who is acting, for the audit log: the API's principal, from the caller's address. */
export function apiActor(c: Context<ApiEnv>): AuditActor {
  let ip: string | null = null;
  try {
    ip = getConnInfo(c).remote.address ?? null;
  } catch {
    // Not served by @hono/node-server (e.g. app.request() in tests): no socket to read.
  }
  return {
    actor: c.get('principal'),
    role: null,
    source: 'api',
    ip,
    userAgent: c.req.header('user-agent') ?? null,
  };
}
