import { Hono } from 'hono';
import type { Pool } from '../../shared/db/pool.ts';
import type { Redis } from '../../shared/queue/redis.ts';

export interface HealthDeps {
  pool: Pool;
  redis: Redis;
  timeoutMs: number;
}

async function probe(fn: () => Promise<unknown>, timeoutMs: number): Promise<'ok' | 'unavailable'> {
  let timer: NodeJS.Timeout | undefined;
  try {
    await Promise.race([
      fn(),
      new Promise((_, reject) => (timer = setTimeout(() => reject(new Error('timeout')), timeoutMs))),
    ]);
    return 'ok';
  } catch {
    return 'unavailable';
  } finally {
    clearTimeout(timer);
  }
}

/** `/healthz`: the process is alive. `/readyz`: Redis and Postgres answer, else 503. */
export function healthRoutes(deps: HealthDeps): Hono {
  const app = new Hono();
  app.get('/healthz', (c) => c.json({ status: 'ok' }));
  app.get('/readyz', async (c) => {
    const [redis, postgres] = await Promise.all([
      probe(() => deps.redis.ping(), deps.timeoutMs),
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
