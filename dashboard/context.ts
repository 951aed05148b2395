import { getConnInfo } from '@hono/node-server/conninfo';
import type { Context } from 'hono';
import type { AuditActor, AuditLog } from '../shared/audit/audit-log.ts';
import type { Config } from '../shared/config/config.ts';
import type { Pool } from '../shared/db/pool.ts';
import type { DeadLetterActions } from '../shared/dead-letters/actions.ts';
import type { DeadLetterStore } from '../shared/dead-letters/store.ts';
import type { Logger } from '../shared/observability/logger.ts';
import type { Credentials } from './auth/credentials.ts';
import type { LoginLimiter } from './auth/login-limiter.ts';
import type { DashboardSession, DashboardSessions } from './auth/sessions.ts';
import type { RedriveOutcomes } from './dead-letters/outcome.ts';
import type { OrderStories } from './orders/story.ts';
import type { OverviewSource } from './overview/overview.ts';
import type { TenantsSource } from './overview/tenants.ts';

/** Where the dashboard is mounted; every page, Bull Board included, lives below it. */
export const BASE_PATH = '/dashboard';

/** Bull Board's UI and JSON API ("Queues" in the top bar); the console's Overview owns {@link BASE_PATH}. */
export const BOARD_PATH = `${BASE_PATH}/queues`;

/** Everything the dashboard's routes need; built once in `server.ts`, nothing per request. */
export interface DashboardDeps {
  config: Config;
  logger: Logger;
  /** For the console's own queries (bulk selections); stories and the Overview have their own modules. */
  pool: Pool;
  sessions: DashboardSessions;
  credentials: Credentials;
  loginLimiter: LoginLimiter;
  audit: AuditLog;
  deadLetters: DeadLetterStore;
  actions: DeadLetterActions;
  /** The Overview's numbers: queue depths, bus lag, outbox, dead letters, throughput, breakers. */
  overview: OverviewSource;
  /** Each command queue's tenants waiting for their turn (fairness). */
  tenants: TenantsSource;
  /** An order's whole story from the write model, outbox, inbox, dead letters and audit log. */
  stories: OrderStories;
  /** What happened to a dead letter after its last redrive. */
  outcomes: RedriveOutcomes;
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
