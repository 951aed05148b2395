import { getConnInfo } from '@hono/node-server/conninfo';
import type { Context } from 'hono';
import type { AuditActor, AuditLog } from '../shared/audit/audit-log.ts';
import type { Config } from '../shared/config/config.ts';
import type { DeadLetterActions } from '../shared/dead-letters/actions.ts';
import type { DeadLetterStore } from '../shared/dead-letters/store.ts';
import type { Logger } from '../shared/observability/logger.ts';
import type { Credentials } from './auth/credentials.ts';
import type { LoginLimiter } from './auth/login-limiter.ts';
import type { DashboardSession, DashboardSessions } from './auth/sessions.ts';

/** Where the dashboard is mounted; Bull Board's UI and every page live below it. */
export const BASE_PATH = '/dashboard';

/** Everything the dashboard's routes need; built once in `server.ts`, nothing per request. */
export interface DashboardDeps {
  config: Config;
  logger: Logger;
  sessions: DashboardSessions;
  credentials: Credentials;
  loginLimiter: LoginLimiter;
  audit: AuditLog;
  deadLetters: DeadLetterStore;
  actions: DeadLetterActions;
}

/** Per-request variables set by middleware. */
export interface DashboardEnv {
  Variables: {
    log: Logger;
    /** The operator's session; set for every route behind the session guard. */
    session: DashboardSession;
    /** The session's cookie token (to destroy it on logout). */
    sessionToken: string;
  };
}

/** The client's address: the TCP peer (a forwarded-for header is trivially spoofed, so not trusted). */
export function clientIp(c: Context): string {
  try {
    return getConnInfo(c).remote.address ?? 'unknown';
  } catch {
    return 'unknown'; // not served by @hono/node-server (app.request() in tests)
  }
}

/** Who is acting and from where, for the audit log. */
export function actorOf(c: Context<DashboardEnv>, fallbackUser?: string): AuditActor {
  const session = c.get('session') as DashboardSession | undefined;
  return {
    actor: session?.user ?? fallbackUser ?? 'anonymous',
    role: session?.role ?? null,
    source: 'dashboard',
    ip: clientIp(c),
    userAgent: c.req.header('user-agent') ?? null,
  };
}
