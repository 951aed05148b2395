import type { OpenAPIHono } from '@hono/zod-openapi';
import type { ApiDeps, ApiEnv } from '../../shared/http/context.ts';
import { redisCaller } from '../../shared/http/redis-call.ts';
import type { ResourceExtension } from '../../shared/http/modules.ts';

/**
 * Every registered module's routes on `app`, in registry order, each given its command queue, the
 * shared edge and what the other modules add to its resources. They register on `app` itself rather
 * than on sub-apps, so a request meets no extra level of routing.
 */
export function moduleRoutes(app: OpenAPIHono<ApiEnv>, deps: ApiDeps): void {
  // A request's Redis calls (and the enqueue) may take two command timeouts before it answers 503.
  const timeoutMs = deps.config.redis.commandTimeoutMs * 2;
  const redisCall = redisCaller(timeoutMs);
  const extensions = (resource: string): ResourceExtension<never>[] =>
    deps.moduleApis.flatMap((m) => {
      const e = m.api.extensions?.[resource];
      return e ? [e] : [];
    });
  for (const { name, api } of deps.moduleApis) {
    const commands = deps.commandQueues.get(name);
    if (!commands) throw new Error(`module ${name} has no command queue`);
    api.routes({
      app,
      deps,
      commands,
      commandQueues: deps.commandQueues,
      redisCall,
      timeoutMs,
      extensions,
    });
  }
}
