import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { eventually, testConfig } from '../support/env.ts';
import { request, sampleOrder } from '../support/http.ts';
import { startPlatform, type Platform } from '../support/platform.ts';
import { ownRedis, type OwnRedis } from '../support/redis-server.ts';

let redis: OwnRedis;
let platform: Platform;

beforeAll(async () => {
  redis = await ownRedis();
  platform = await startPlatform(testConfig({ REDIS_URL: redis.url, REDIS_COMMAND_TIMEOUT_MS: '500' }), {
    workers: [],
  });
});
afterAll(async () => {
  await platform.close({ keep: true }).catch(() => undefined);
  await redis.stop();
});

describe('Redis down', () => {
  it('answers 503 problem+json with Retry-After (never a false 202), readiness fails, and recovers', async () => {
    const ok = await request(`${platform.url}/v1/orders`, { method: 'POST', json: sampleOrder() });
    expect(ok.status).toBe(202);

    await redis.kill();
    const started = Date.now();
    const down = await request(`${platform.url}/v1/orders`, { method: 'POST', json: sampleOrder() });
    expect(down.status).toBe(503);
    expect(down.headers.get('content-type')).toContain('application/problem+json');
    expect(down.headers.get('retry-after')).toBeTruthy();
    expect(Date.now() - started).toBeLessThan(5_000); // fails fast, no hang
    const keyed = await request(`${platform.url}/v1/orders`, {
      method: 'POST',
      json: sampleOrder(),
      headers: { 'idempotency-key': 'k-down' },
    });
    expect(keyed.status).toBe(503);
    expect((await request(`${platform.url}/readyz`)).status).toBe(503);

    await redis.start();
    await eventually(async () => (await request(`${platform.url}/readyz`)).status === 200, {
      what: 'API to reconnect',
    });
    const again = await request(`${platform.url}/v1/orders`, {
      method: 'POST',
      json: sampleOrder(),
      headers: { 'idempotency-key': 'k-down' },
    });
    expect(again.status).toBe(202); // the failed attempt left no claim behind
  });
});
