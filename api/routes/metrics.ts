import { Hono, type Context, type MiddlewareHandler } from 'hono';
import { matchedRoutes } from 'hono/route';
import type { Metrics } from '../../shared/observability/metrics.ts';
import type { ApiEnv } from '../../shared/http/context.ts';

/** Label of requests no route matched (404s of unknown paths): one series, however many paths. */
export const UNMATCHED_ROUTE = 'unmatched';

/**
 * The route pattern that served (or would have served) the request, e.g. `/v1/orders/:id`: the
 * handler that ran if it was a route, else the first route that matched — so a 401 from the auth
 * middleware is still counted under the route it protected. Middleware (`use`, method `ALL`) never
 * names a route. Raw paths are never used: one series per order id would blow up Prometheus.
 */
export function routeLabel(c: Context): string {
  const routes = matchedRoutes(c);
  const current = routes[c.req.routeIndex];
  if (current && current.method !== 'ALL') return current.path;
  return routes.find((r) => r.method !== 'ALL')?.path ?? UNMATCHED_ROUTE;
}

/**
 * Times every request into `conveyor_http_request_duration_seconds{method,route,status}`. Mount it
 * first so the time includes every other middleware. Errors never escape `next()` in Hono (they
 * become the `onError` response), so the status seen here is the one sent.
 * @example app.use('*', httpMetrics(metrics));
 */
export function httpMetrics(metrics: Metrics): MiddlewareHandler<ApiEnv> {
  return async (c, next) => {
    const started = performance.now();
    try {
      await next();
    } finally {
      metrics.observeHttp({
        method: c.req.method,
        route: routeLabel(c),
        status: c.res.status,
        durationSeconds: (performance.now() - started) / 1_000,
      });
    }
  };
}

/**
 * `GET /metrics`: the Prometheus text exposition of this process. Outside `/v1`, so API keys do not
 * apply: keep it reachable from the cluster only (Service without Ingress, a NetworkPolicy).
 */
export function metricsRoutes(metrics: Metrics): Hono<ApiEnv> {
  const app = new Hono<ApiEnv>();
  app.get('/metrics', async (c) =>
    c.body(await metrics.render(), 200, { 'content-type': metrics.contentType }),
  );
  return app;
}
