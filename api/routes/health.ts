import { Hono } from 'hono';
import type { Pool } from '../../shared/db/pool.ts';
import type { Redis } from '../../shared/queue/redis.ts';
import { probe } from '../../shared/runtime/probe.ts';

export interface HealthDeps {
  pool: Pool;
  /** Every connection requests depend on: ready only if each answers. */
  redis: readonly Redis[];
  timeoutMs: number;
}

/** `/healthz`: the process is alive. `/readyz`: Redis and Postgres answer, else 503. */
export function healthRoutes(deps: HealthDeps): Hono {
  const app = new Hono();
  app.get('/healthz', (c) => c.json({ status: 'ok' }));
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
