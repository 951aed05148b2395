import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createOverviewSource } from '../../dashboard/overview/overview.ts';
import { eventually, testConfig } from '../support/env.ts';
import { request, sampleOrder } from '../support/http.ts';
import { startPlatform, type Platform } from '../support/platform.ts';

// The console's Overview on the SQS bus reads the projections queue's depth with the same reader as
// /metrics, and KEDA's replica count for it — not "unavailable".
let platform: Platform;

beforeAll(async () => {
  platform = await startPlatform(testConfig({ EVENT_BUS: 'sqs' }));
});
afterAll(async () => {
  await platform?.close();
});

describe('Overview on EVENT_BUS=sqs', () => {
  it('shows the projections queue depth and the replicas KEDA would run for it', async () => {
    const res = await request(`${platform.url}/v1/orders`, { method: 'POST', json: sampleOrder() });
    expect(res.status).toBe(202);
    const source = createOverviewSource({
      config: platform.config,
      pool: platform.rt.pool,
      redis: platform.rt.redis,
    });
    try {
      const overview = await eventually(
        async () => {
          const o = await source.read();
          return o.bus.depth?.ok ? o : undefined;
        },
        { what: 'the SQS depth in the Overview' },
      );
      expect(overview.bus.kind).toBe('sqs');
      expect(overview.bus.depth).toMatchObject({
        ok: true,
        value: [
          { label: expect.stringMatching(/^visible messages in /), value: expect.any(Number) },
          { label: expect.stringMatching(/-dlq$/), value: expect.any(Number) },
        ],
      });
      expect(overview.bus.scaling).toMatchObject({ ok: true, value: { desired: expect.any(Number) } });
      expect(overview.findings.map((f) => f.text).join('\n')).not.toMatch(/sqs depth unavailable/);
    } finally {
      await source.close();
    }
  });
});
