import { Hono } from 'hono';
import type { Pool } from '../../shared/db/pool.ts';
import type { Redis } from '../../shared/queue/redis.ts';
import type { Failure } from '../../shared/runtime/lifecycle.ts';
import { liveness, probe } from '../../shared/runtime/probe.ts';

export interface HealthDeps {
  pool: Pool;
  /** Every connection requests depend on: ready only if each answers. */
  redis: readonly Redis[];
  timeoutMs: number;
  /** The process's failure, if a component can no longer work (the lifecycle's `failure`). */
  failure?: () => Failure | undefined;
}

/**
 * `/healthz`: the process is alive and every component of it can work, else 503 naming the failed
 * one (see `liveness`). `/readyz`: Redis and Postgres answer, else 503.
 */
export function healthRoutes(deps: HealthDeps): Hono {
  const app = new Hono();
  app.get('/healthz', (c) => {
    const { status, body } = liveness(deps.failure?.());
    return c.json(body, status);
  });
  app.get('/readyz', async (c) => {
    const [redis, postgres] = await Promise.all([
      probe(() => Promise.all(deps.redis.map((r) => r.ping())), deps.timeoutMs),
      probe(() => deps.pool.query('SELECT 1'), deps.timeoutMs),
    ]);
    const ready = redis === 'ok' && postgres === 'ok';
    return c.json(
      { status: ready ? 'ready' : 'unavailable', checks: { redis, postgres } },
      ready ? 200 : 503,
    );
  });
  return app;
}
