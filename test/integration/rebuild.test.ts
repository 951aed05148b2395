import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { rebuildReadModels } from '../../workers/projections/rebuild.ts';
import { eventually, testConfig, testLogger } from '../support/env.ts';
import { request, sampleOrder } from '../support/http.ts';
import { startPlatform, type Platform } from '../support/platform.ts';

let platform: Platform;

beforeAll(async () => {
  platform = await startPlatform(testConfig());
});
afterAll(async () => {
  await platform.close();
});

const snapshot = async () => {
  const q = (sql: string) => platform.rt.pool.query(sql).then((r) => r.rows);
  return {
    views: await q(
      'SELECT order_id, customer_id, total_cents, status, attempts, correlation_id FROM order_view ORDER BY order_id',
    ),
    daily: await q('SELECT * FROM daily_stats ORDER BY day, currency'),
    customers: await q('SELECT * FROM customer_stats ORDER BY customer_id, currency'),
  };
};

describe('projections:rebuild', () => {
  it('rebuilds read models equal to the live ones from retained events, while the API keeps serving', async () => {
    const orders = Array.from({ length: 60 }, (_, i) =>
      sampleOrder({
        customerId: `rb-${i % 4}`,
        currency: i % 10 === 0 ? 'XTS' : i % 2 ? 'EUR' : 'USD',
        items: [{ sku: 's', quantity: 1, unitPriceCents: 100 + i }],
      }),
    );
    const res = await request<{ orders: { orderId: string }[] }>(`${platform.url}/v1/orders/batch`, {
      method: 'POST',
      json: { orders },
    });
    expect(res.status).toBe(202);
    await eventually(async () => {
      const { rows } = await platform.rt.pool.query(
        `SELECT count(*)::int AS n FROM order_view WHERE status IN ('completed', 'rejected')`,
      );
      return rows[0].n === 60;
    });
    const live = await snapshot();
    const liveStats = (await request(`${platform.url}/v1/stats`)).body;
    expect(live.views).toHaveLength(60);

    // Readers during the rebuild see complete stats, never an empty or half-built read model.
    let reading = true;
    const seen: unknown[] = [];
    const reader = (async () => {
      while (reading) seen.push((await request(`${platform.url}/v1/stats`)).body);
    })();
    const replayed = await rebuildReadModels({ pool: platform.rt.pool, logger: testLogger(), batchSize: 7 });
    reading = false;
    await reader;

    expect(replayed).toBe(60);
    expect(await snapshot()).toEqual(live);
    expect(seen.length).toBeGreaterThan(0);
    for (const s of seen) expect(s).toEqual(liveStats);
  });
});
