import { OpenAPIHono } from '@hono/zod-openapi';
import type { ApiEnv } from '../../shared/http/context.ts';
import type { CommandTarget } from '../../shared/http/modules.ts';
import { onError } from '../../shared/http/errors.ts';
import { cancelRoutes } from '../../api/routes/cancel.ts';
import { MODULES } from '../../modules/registry.ts';
import { fairTarget } from '../../shared/fairness/fair-queue.ts';
import { createCommandQueue } from '../../shared/queue/command-queue.ts';
import type { Runtime } from '../../shared/runtime/bootstrap.ts';
import { createCommandCanceller, type CommandCanceller } from '../../shared/commands/cancel.ts';

/**
 * The cancel routes (api/routes/cancel.ts) on an app of their own over a runtime's queues, as the API
 * builds them (each module's command queue and its fair queue), behind a stand-in of the auth
 * middleware: `principal`, `scopes` and `tenant` from the `x-test-*` headers (default: the development
 * key, admin). For tests that do not depend on api/app.ts registering the routes.
 */
export function cancelApp(rt: Runtime): {
  app: OpenAPIHono<ApiEnv>;
  canceller: CommandCanceller;
  /** A module's command queue (as the API's). */
  queue(module: string): CommandTarget['queue'];
  close(): Promise<void>;
} {
  const { config } = rt;
  const commandQueues = new Map<string, CommandTarget>(
    MODULES.map((module) => {
      const queue = createCommandQueue(rt.redis, config.redis.queuePrefix, module.name);
      const fair = fairTarget(config.fairness, module.name, queue.toKey(''));
      return [module.name, { module, queue, jobName: module.jobName, jobOptions: {}, fair }];
    }),
  );
  const deps = { pool: rt.pool, redis: rt.redis, config, logger: rt.logger, commandQueues };
  const canceller = createCommandCanceller({
    pool: rt.pool,
    modules: MODULES,
    queue: (m) => commandQueues.get(m)?.queue,
    fair: (m) => commandQueues.get(m)?.fair?.queue,
    redis: rt.redis,
    prefix: config.redis.queuePrefix,
    logger: rt.logger,
  });
  const app = new OpenAPIHono<ApiEnv>();
  app.onError(onError);
  app.use('*', async (c, next) => {
    const principal = c.req.header('x-test-principal') ?? 'dev';
    c.set('correlationId', 'test');
    c.set('principal', principal);
    c.set('scopes', (c.req.header('x-test-scopes') ?? 'admin').split(','));
    c.set('tenant', {
      id: c.req.header('x-test-tenant') ?? principal,
      policy: { weight: 1, maxInFlight: 0, backlogQuota: 0, subTenants: false },
    });
    await next();
  });
  app.route('/', cancelRoutes(deps, canceller));
  return {
    app,
    canceller,
    queue: (module) => commandQueues.get(module)!.queue,
    async close() {
      for (const { queue } of commandQueues.values()) await queue.close();
    },
  };
}
