import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { eventually, testConfig } from '../support/env.ts';
import { request, sampleOrder } from '../support/http.ts';
import { startPlatform, type Platform } from '../support/platform.ts';

// The relays are woken by the order worker's NOTIFY after each commit (workers/outbox/wake.ts), not by
// a trigger inside the write: with the safety-net poll an hour away, an order still reaches the read
// model at once.
let platform: Platform;

beforeAll(async () => {
  platform = await startPlatform(testConfig({ OUTBOX_POLL_INTERVAL_MS: '3600000' }));
  const listen = `LISTEN "outbox_${platform.config.database.schema}"`;
  await eventually(
    async () =>
      (await platform.rt.pool.query('SELECT 1 FROM pg_stat_activity WHERE query = $1', [listen])).rowCount! >
      0,
    { what: 'the relay listening' },
  );
});
afterAll(async () => {
  await platform.close();
});

describe('relay wake-up', () => {
  it('publishes an order’s event as soon as the order worker committed it, without waiting for the poll', async () => {
    const res = await request(`${platform.url}/v1/orders`, { method: 'POST', json: sampleOrder() });
    expect(res.status).toBe(202);
    const orderId = res.body.orderId as string;
    const view = await eventually(
      async () => {
        const r = await request(`${platform.url}/v1/orders/${orderId}`);
        return r.body.updatedAt ? r.body : undefined;
      },
      { timeoutMs: 10_000, what: 'the order projected' },
    );
    expect(view.status).toBe('completed');
    // No trigger on the outbox: nothing inside the write transaction takes the NOTIFY lock.
    const { rows } = await platform.rt.pool.query(
      `SELECT count(*)::int AS n FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
        WHERE c.relname = 'outbox' AND c.relnamespace = current_schema()::regnamespace AND NOT t.tgisinternal`,
    );
    expect(rows[0].n).toBe(0);
  });
});
