import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Config } from '../../../shared/config/config.ts';
import { eventually, testConfig } from '../../support/env.ts';
import { request, sampleOrder } from '../../support/http.ts';
import { startPlatform, type Platform } from '../../support/platform.ts';
import { startReceiver, type Receiver } from './receiver.ts';

// One endpoint that hangs (accepts the connection, never answers) must not delay another endpoint's
// deliveries. The worker runs 4 deliveries at once and each endpoint may hold at most 2 of them
// (its fairness tenant's max_in_flight): without that limit the hanging endpoint's 6 deliveries
// would take all 4 slots until their timeout, and the healthy endpoint would wait behind them.
const ORDERS = 6;
const TIMEOUT_MS = 6_000;

describe('webhooks: one dead endpoint never delays another', () => {
  let platform: Platform;
  let hanging: Receiver;
  let healthy: Receiver;
  const url = (path: string) => `${platform.url}${path}`;

  beforeAll(async () => {
    const config: Config = testConfig({
      EVENT_BUS: 'bullmq',
      WEBHOOKS_CONCURRENCY: '4',
      WEBHOOKS_ATTEMPTS: '2',
      WEBHOOKS_TIMEOUT_MS: String(TIMEOUT_MS),
      WEBHOOKS_ENDPOINT_MAX_IN_FLIGHT: '2',
    });
    platform = await startPlatform(config, { workers: ['orders', 'outbox', 'projections', 'webhooks'] });
    hanging = await startReceiver(() => 'hang');
    healthy = await startReceiver(() => 200);
  });
  afterAll(async () => {
    await Promise.all([hanging?.close(), healthy?.close()]);
    await platform?.close();
  });

  it('delivers every event to the healthy endpoint while the hanging one holds only its own slots', async () => {
    // The hanging endpoint registered first: its deliveries of each event are added first too.
    for (const target of [hanging, healthy]) {
      const res = await request(url('/v1/webhooks'), {
        method: 'POST',
        json: { url: target.url, eventTypes: ['order.placed'] },
      });
      expect(res.status).toBe(201);
    }
    const res = await request(url('/v1/orders/batch'), {
      method: 'POST',
      json: { orders: Array.from({ length: ORDERS }, () => sampleOrder()) },
    });
    expect(res.status).toBeLessThan(300);
    await eventually(() => healthy.received.length === ORDERS, {
      what: `${ORDERS} deliveries to the healthy endpoint`,
      timeoutMs: 20_000,
    });
    const firstHang = Math.min(...hanging.received.map((r) => r.at));
    const lastHealthy = Math.max(...healthy.received.map((r) => r.at));
    // Every healthy delivery arrived before the first hanging attempt could even time out.
    expect(lastHealthy - firstHang).toBeLessThan(TIMEOUT_MS);
    // The hanging endpoint never had more than its 2 deliveries in progress.
    expect(hanging.received.length).toBeLessThanOrEqual(2);
    expect(new Set(healthy.received.map((r) => r.headers['webhook-id'])).size).toBe(ORDERS);
  });
});
