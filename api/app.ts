import { OpenAPIHono } from '@hono/zod-openapi';
import { httpInstrumentationMiddleware } from '@hono/otel';
import { cors } from 'hono/cors';
import { ValidationError } from '../shared/errors/domain.ts';
import { fieldErrors } from '../shared/errors/problem.ts';
import { limitsByPrincipal } from '../shared/security/api-keys.ts';
import type { Failure } from '../shared/runtime/lifecycle.ts';
import type { ApiDeps, ApiEnv } from '../shared/http/context.ts';
import { notFound, onError } from '../shared/http/errors.ts';
import { correlation, requireJson } from './middleware/request.ts';
import { bodyLimit } from '../shared/http/body-limit.ts';
import { responseHeaders } from '../shared/http/headers.ts';
import { auth, scopePolicy } from './middleware/auth.ts';
import { rateLimit } from './middleware/rate-limit.ts';
import { sessionRoutes } from './routes/sessions.ts';
import { auditRoutes } from './routes/audit.ts';
import { deadLetterRoutes } from './routes/dead-letters.ts';
import { healthRoutes } from './routes/health.ts';
import { httpMetrics, metricsRoutes } from './routes/metrics.ts';
import { scalingRoutes } from './routes/scaling.ts';
import { moduleRoutes } from './routes/modules.ts';
import type { OutcomeHub } from './results/hub.ts';
import { createResults, type ResultsSettings } from './results/index.ts';
import { batchRoutes } from './routes/batches.ts';
import { SEARCH_SCOPE_RULE, searchRoutes } from './routes/search.ts';
import { bulkRoutes } from './routes/bulk.ts';
import { cancelRoutes } from './routes/cancel.ts';
import { createCommandSearch } from '../shared/search/search.ts';

/**
 * The most bytes a request outside `/v1` may carry. Those routes need no key (probes, `/metrics`,
 * `/openapi.json`) and take no body; under `/v1` the key is checked before any route reads one, and
 * each route that takes a body has its own limit (`API_BODY_LIMIT_BYTES`, `API_BATCH_BODY_LIMIT_BYTES`).
 */
export const UNKEYED_BODY_LIMIT_BYTES = 1_024;

/**
 * The stateless HTTP API: validates, deduplicates and enqueues commands; answers queries from read
 * models. Nothing in process memory that another replica needs.
 * `options.failure` (the process lifecycle's) turns `/healthz` into 503 once a component failed.
 * `options.results` (the process's outcome hub): `Prefer: wait` on every module's command POST and
 * GET, and `GET <command>/events` (api/results); absent, neither.
 * @example const app = createApp(deps, { failure: lifecycle.failure }); serve({ fetch: app.fetch, port: 3000 });
 */
export function createApp(
  deps: ApiDeps,
  options: {
    failure?: () => Failure | undefined;
    results?: { hub: OutcomeHub; settings?: Partial<ResultsSettings> };
  } = {},
): OpenAPIHono<ApiEnv> {
  const app = new OpenAPIHono<ApiEnv>({
    defaultHook: (result) => {
      if (!result.success) {
        throw new ValidationError('the request does not match the schema', fieldErrors(result.error.issues));
      }
    },
  });
  app.onError(onError);
  app.notFound(notFound);
  // Tracing on: the request's server span (an incoming W3C traceparent is its parent), first, so it
  // holds everything else. Off: not mounted at all.
  // Probes and scrapes (every few seconds from Kubernetes and Prometheus) are not worth a trace each.
  if (deps.config.tracing.enabled) {
    const traced = httpInstrumentationMiddleware({ serviceName: deps.config.tracing.serviceName });
    const untraced = new Set(['/healthz', '/readyz', '/metrics']);
    app.use('*', (c, next) => (untraced.has(c.req.path) ? next() : traced(c, next)));
  }
  app.use('*', httpMetrics(deps.metrics));
  app.use('*', responseHeaders()); // security headers; before anything that adds headers
  app.use('*', correlation(deps.logger));
  if (deps.config.api.corsOrigins.length > 0) {
    app.use(
      '/v1/*',
      cors({
        origin: [...deps.config.api.corsOrigins],
        exposeHeaders: ['x-correlation-id', 'location', 'content-location', 'preference-applied'],
      }),
    );
  }
  const unkeyedLimit = bodyLimit({ maxSize: UNKEYED_BODY_LIMIT_BYTES });
  app.use('*', (c, next) => (c.req.path.startsWith('/v1/') ? next() : unkeyedLimit(c, next)));
  app.use('/v1/*', requireJson());
  const allowDevKey = deps.apiKeys.length === 0 && deps.config.env !== 'production';
  app.use(
    '/v1/*',
    auth({
      keys: deps.apiKeys,
      allowDevKey,
      sessions: deps.sessions,
      tenants: deps.config.fairness.tenants,
      // Any key may ask; the search answers each with what it may read (api/routes/search.ts).
      policy: [...scopePolicy(), SEARCH_SCOPE_RULE],
    }),
  );
  const limits = deps.config.rateLimiting;
  const defaults = { writes: limits.maxRequests, reads: limits.maxReadRequests };
  app.use(
    '/v1/*',
    rateLimit({
      redis: deps.requestRedis,
      prefix: deps.config.redis.queuePrefix,
      windowMs: limits.windowMs,
      defaults,
      perPrincipal: limitsByPrincipal(deps.apiKeys, defaults, allowDevKey),
    }),
  );

  // The core's own routes that take a body (bulk redrive's filter, opening a session); a module's
  // routes set their own limits.
  const coreLimit = bodyLimit({ maxSize: deps.config.api.bodyLimitBytes });
  for (const path of [
    '/v1/dead-letters/*',
    '/v1/sessions',
    '/v1/sessions/*',
    '/v1/bulk-actions',
    '/v1/bulk-actions/*',
  ])
    app.use(path, coreLimit);

  app.route(
    '/',
    healthRoutes({
      pool: deps.pool,
      redis: [deps.redis, deps.requestRedis],
      timeoutMs: deps.config.redis.commandTimeoutMs,
      ...(options.failure ? { failure: options.failure } : {}),
    }),
  );
  app.route('/', metricsRoutes(deps.metrics));
  const queues = deps.metrics.watchQueues({
    connection: deps.redis,
    prefix: deps.config.redis.queuePrefix,
    modules: deps.moduleApis,
    tenantsTop: deps.config.fairness.metricsTop,
  });
  app.route('/', scalingRoutes({ queues, timeoutMs: deps.config.redis.commandTimeoutMs }));
  // Results: the wait middleware runs before any module's handler (after auth and rate limits: a wait
  // is a request like any other); the stream routes once the modules registered their resources.
  const results = options.results
    ? createResults(app, {
        hub: options.results.hub,
        logger: deps.logger,
        settings: options.results.settings ?? {},
      })
    : undefined;
  if (results) app.use('/v1/*', results.middleware);
  moduleRoutes(app, deps);
  results?.mountStreams();
  app.route('/', batchRoutes(deps));
  app.route('/', deadLetterRoutes(deps));
  app.route(
    '/',
    searchRoutes(
      createCommandSearch({
        reads: deps.reads,
        redis: deps.redis,
        queuePrefix: deps.config.redis.queuePrefix,
        queueOf: (module) => deps.commandQueues.get(module)?.queue,
      }),
    ),
  );
  // Search, cancel and bulk actions (issue #23).
  app.route('/', cancelRoutes(deps));
  app.route('/', bulkRoutes(deps));
  app.route('/', auditRoutes(deps));
  app.route('/', sessionRoutes(deps));

  app.doc31('/openapi.json', {
    openapi: '3.1.0',
    info: {
      title: 'Conveyor API',
      version: '1.0.0',
      description:
        'Post orders as commands; read orders and stats from CQRS read models. Errors are RFC 9457 problems.',
    },
  });
  return app;
}
