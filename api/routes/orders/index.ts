import { OpenAPIHono } from '@hono/zod-openapi';
import type { ApiDeps, ApiEnv } from '../../context.ts';
import { redisCaller } from '../../edge/redis-call.ts';
import { orderCommandRoutes } from './commands.ts';
import { orderQueryRoutes } from './queries.ts';

/**
 * The orders module's HTTP routes: its commands, then its queries, on one app. Both register on
 * that app rather than on sub-apps of their own, so a request meets no extra level of routing.
 * @example app.route('/', ordersRoutes(deps));
 */
export function ordersRoutes(deps: ApiDeps): OpenAPIHono<ApiEnv> {
  const app = new OpenAPIHono<ApiEnv>();
  // A request's Redis calls (and the enqueue) may take two command timeouts before it answers 503.
  const timeoutMs = deps.config.redis.commandTimeoutMs * 2;
  const redisCall = redisCaller(timeoutMs);
  orderCommandRoutes(app, deps, { timeoutMs, redisCall });
  orderQueryRoutes(app, deps, redisCall);
  return app;
}
