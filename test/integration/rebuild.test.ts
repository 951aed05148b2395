import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createPruner } from '../../workers/maintenance/pruner.ts';
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

    // Every retained event: the 60 orders' and the batch's one batch.completed (declared, nothing to apply).
    expect(replayed).toBe(61);
    expect(await snapshot()).toEqual(live);
    expect(seen.length).toBeGreaterThan(0);
    for (const s of seen) expect(s).toEqual(liveStats);
  });

  it('refuses, deleting nothing, when retention pruned events the read models hold; rebuilds only when told to drop them', async () => {
    const pool = platform.rt.pool;
    const orders = Array.from({ length: 8 }, (_, i) =>
      sampleOrder({
        customerId: `rb-lost-${i}`,
        items: [{ sku: 's', quantity: 1, unitPriceCents: 500 + i }],
      }),
    );
    const res = await request<{ orders: { orderId: string }[] }>(`${platform.url}/v1/orders/batch`, {
      method: 'POST',
      json: { orders },
    });
    expect(res.status).toBe(202);
    const ids = res.body.orders.map((o) => o.orderId);
    const projected = async () =>
      (
        await pool.query<{ id: string }>(
          `SELECT order_id::text AS id FROM order_view
            WHERE order_id = ANY($1::uuid[]) AND status IN ('completed', 'rejected') ORDER BY 1`,
          [ids],
        )
      ).rows.map((r) => r.id);
    await eventually(async () => (await projected()).length === 8, { what: 'the orders projected' });
    const live = await snapshot();
    const lost = ids.slice(0, 3);
    const rebuild = (dropHistoryOlderThanOutbox = false) =>
      rebuildReadModels({ pool, logger: testLogger(), dropHistoryOlderThanOutbox });

    // A deployment older than its outbox retention: the previous release's pruner (or a hand) already
    // removed some events — only the inbox still knows they were applied.
    await pool.query('DELETE FROM outbox WHERE aggregate_id = $1', [lost[0]]);
    await expect(rebuild()).rejects.toThrow(/refusing to rebuild.*--drop-history-older-than-outbox/s);
    expect(await snapshot()).toEqual(live);

    // This release's pruner marks the history it takes from the outbox before it takes it, so the
    // rebuild refuses even once the inbox forgot those events too.
    await pool.query(
      `UPDATE outbox SET published_at = now() - interval '200 hours' WHERE aggregate_id = ANY($1::text[])`,
      [lost.slice(1)],
    );
    const pruner = createPruner(
      { pool, logger: testLogger() },
      {
        outboxRetentionHours: 168,
        auditRetentionDays: 0,
        deadLetterRetentionDays: 0,
        inboxRetentionHours: 0,
      },
    );
    await pruner.close(); // waits for its start-up prune
    expect(
      (await pool.query('SELECT count(*)::int AS n FROM outbox WHERE aggregate_id = ANY($1::text[])', [lost]))
        .rows[0].n,
    ).toBe(0);
    await pool.query(
      `DELETE FROM projection_inbox i WHERE NOT EXISTS (SELECT 1 FROM outbox o WHERE o.event_id = i.event_id)`,
    );
    await expect(rebuild()).rejects.toThrow(/refusing to rebuild/);
    expect(await snapshot()).toEqual(live);

    // Told to drop that history, it rebuilds what the outbox holds: the pruned orders are gone, the others kept.
    await rebuild(true);
    expect(await projected()).toEqual(ids.filter((id) => !lost.includes(id)).sort());
    // The read models are now exactly the retained outbox: the next rebuild needs no flag.
    await rebuild();
    expect(await projected()).toEqual(ids.filter((id) => !lost.includes(id)).sort());
  });
});
