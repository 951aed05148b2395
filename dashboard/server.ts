import { serve } from '@hono/node-server';
import type { AddressInfo } from 'node:net';
import { Queue } from 'bullmq';
import { createAuditLog } from '../shared/audit/audit-log.ts';
import { createDeadLetterActions } from '../shared/dead-letters/actions.ts';
import { createRuntimeRedriver } from '../shared/dead-letters/runtime-redriver.ts';
import { createDeadLetterStore } from '../shared/dead-letters/store.ts';
import { allQueueNames, queueOptions } from '../shared/queue/names.ts';
import type { Runtime } from '../shared/runtime/bootstrap.ts';
import { createDashboardApp } from './app.ts';
import { createCredentials } from './auth/credentials.ts';
import { createLoginFailures } from './auth/login-failures.ts';
import { createLoginLimiter } from './auth/login-limiter.ts';
import { createDashboardSessions } from './auth/sessions.ts';
import { createBoards } from './bull-board.ts';
import { BASE_PATH } from './context.ts';
import { createRedriveOutcomes } from './dead-letters/outcome.ts';
import { createJobLookup } from './jobs.ts';
import { createOrderStories } from './orders/story.ts';
import { createOverviewSource } from './overview/overview.ts';
import { createTenantsSource } from './overview/tenants.ts';
import { createSearchConsole } from './routes/search.ts';

export interface DashboardServer {
  port: number;
  close(): Promise<void>;
}

/** Login attempts allowed per IP and user name per minute. */
const LOGIN_ATTEMPTS_PER_MINUTE = 10;

/** A streak of failed logins from one address lasts the limiter's window; its counts are kept an hour. */
const LOGIN_WINDOW_SECONDS = 60;
const LOGIN_FAILURES_RETAIN_SECONDS = 3_600;

/**
 * Builds the dashboard from a bootstrapped runtime and listens on `DASHBOARD_PORT`; registers its
 * cleanup on the lifecycle.
 * @throws {StartupError} in production without `DASHBOARD_PASSWORD`.
 */
export async function startDashboard(rt: Runtime): Promise<DashboardServer> {
  const { config, logger, pool, redis, lifecycle, modules } = rt;
  const log = logger.child({ component: 'dashboard' });
  const credentials = createCredentials(config, log);
  const prefix = config.redis.queuePrefix;

  // Every queue of the platform, dead-letter queues included, on the shared producer connection (on a
  // Redis Cluster each under its own hash tag, as its producers and workers open it).
  const queues = allQueueNames(modules).map((name) => new Queue(name, queueOptions(redis, prefix, name)));
  const redriver = createRuntimeRedriver({ config, logger, pool, redis, modules });
  const jobs = createJobLookup(queues);
  const outcomes = createRedriveOutcomes({ pool, jobs });
  const overview = createOverviewSource({ config, pool, redis });
  const tenants = createTenantsSource({ config, redis });
  const search = createSearchConsole(rt);
  const app = createDashboardApp(
    {
      config,
      logger: log,
      pool,
      overview,
      tenants,
      outcomes,
      stories: createOrderStories({ pool, jobs, outcomes }, BASE_PATH),
      sessions: createDashboardSessions(redis, { prefix, ttlSeconds: config.dashboard.sessionTtlSeconds }),
      credentials,
      loginLimiter: createLoginLimiter(redis, {
        prefix,
        points: LOGIN_ATTEMPTS_PER_MINUTE,
        windowSeconds: LOGIN_WINDOW_SECONDS,
      }),
      audit: createAuditLog(pool),
      deadLetters: createDeadLetterStore(pool),
      actions: createDeadLetterActions({
        pool,
        redis,
        queuePrefix: prefix,
        redrive: redriver.redrive,
        modules,
        logger: log,
      }),
    },
    {
      boards: createBoards(queues),
      search,
      loginFailures: createLoginFailures(redis, {
        prefix,
        windowSeconds: LOGIN_WINDOW_SECONDS,
        retainSeconds: LOGIN_FAILURES_RETAIN_SECONDS,
      }),
      ready: async () => {
        await Promise.all([redis.ping(), pool.query('SELECT 1')]);
      },
    },
  );

  const server = await new Promise<ReturnType<typeof serve>>((resolve, reject) => {
    const s = serve({ fetch: app.fetch, port: config.dashboard.port, hostname: config.dashboard.host }, () =>
      resolve(s),
    );
    s.once('error', reject);
  });
  const port = (server.address() as AddressInfo).port;
  log.info(
    { port, host: config.dashboard.host, path: BASE_PATH, roles: credentials.enabledRoles },
    'dashboard listening',
  );

  let closing: Promise<void> | undefined;
  const close = () =>
    (closing ??= (async () => {
      // Browsers hold idle keep-alive connections open: drop those at once, and cut any request still
      // running once the grace period is over.
      const http = server as unknown as { closeIdleConnections(): void; closeAllConnections(): void };
      const force = setTimeout(() => http.closeAllConnections(), config.workers.shutdownGraceMs);
      force.unref();
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        http.closeIdleConnections();
      });
      clearTimeout(force);
      await overview.close();
      await tenants.close();
      await search.close?.();
      await redriver.close();
      for (const q of queues.toReversed()) await q.close().catch(() => undefined);
    })());
  lifecycle.defer('dashboard', close);
  return { port, close };
}
