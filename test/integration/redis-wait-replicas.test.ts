import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { eventually, testConfig } from '../support/env.ts';
import { request, sampleOrder, type JsonResponse } from '../support/http.ts';
import { startPlatform, type Platform } from '../support/platform.ts';
import { ownRedis, type OwnRedis } from '../support/redis-server.ts';

// REDIS_WAIT_REPLICAS=1 on a private master with one replica. WAIT blocks the connection it runs on:
// the waited writes must not share theirs with /readyz (nor the queue metrics), or a missing replica
// makes every API replica unready at once and Kubernetes takes them all out, reads included.
const WAIT_TIMEOUT_MS = 1_000;

let master: OwnRedis;
let replica: OwnRedis;
let admin: Redis;
let platform: Platform;

/** Makes `replica` replicate `master` and resolves once a WAIT there is acknowledged by it. */
async function attachReplica(): Promise<void> {
  const r = new Redis(replica.url, { maxRetriesPerRequest: 1 });
  r.on('error', () => undefined);
  try {
    await r.call('REPLICAOF', '127.0.0.1', String(master.port));
  } finally {
    r.disconnect();
  }
  await eventually(
    async () => {
      await admin.set('wait-probe', String(Date.now()));
      return Number(await admin.call('WAIT', 1, 200)) === 1;
    },
    { timeoutMs: 15_000, what: 'the replica to acknowledge writes' },
  );
}

beforeAll(async () => {
  master = await ownRedis();
  replica = await ownRedis();
  admin = new Redis(master.url, { maxRetriesPerRequest: 1 });
  await attachReplica();
  platform = await startPlatform(
    testConfig({
      REDIS_URL: master.url,
      REDIS_WAIT_REPLICAS: '1',
      REDIS_WAIT_TIMEOUT_MS: String(WAIT_TIMEOUT_MS),
      REDIS_COMMAND_TIMEOUT_MS: '1500',
    }),
    { workers: [] },
  );
}, 60_000);
afterAll(async () => {
  await platform?.close({ keep: true }).catch(() => undefined);
  admin?.disconnect();
  await replica?.stop();
  await master?.stop();
});

const url = (path: string) => `${platform.url}${path}`;

describe('REDIS_WAIT_REPLICAS with the replica down', () => {
  it('keeps /readyz 200 and fast while waited writes answer 503; a retry with the key succeeds later', async () => {
    const ok = await request(url('/v1/orders'), { method: 'POST', json: sampleOrder() });
    expect(ok.status).toBe(202);

    await replica.kill();
    await eventually(async () => /^connected_slaves:0\r?$/m.test(await admin.info('replication')), {
      what: 'the master to notice its replica is gone',
    });

    // Writes in flight: single orders (coalesced) and batches (one addBulk, one WAIT each).
    const writes: Promise<JsonResponse & { ms: number }>[] = [];
    const timed = (path: string, json: unknown, key: string) => {
      const started = Date.now();
      return request(url(path), { method: 'POST', json, headers: { 'idempotency-key': key } }).then(
        (res) => ({ ...res, ms: Date.now() - started }),
      );
    };
    for (let i = 0; i < 6; i++)
      writes.push(timed('/v1/orders', sampleOrder({ customerId: `c-wait-${i}` }), `wait-order-${i}`));
    for (let i = 0; i < 4; i++)
      writes.push(timed('/v1/orders/batch', { orders: [sampleOrder(), sampleOrder()] }, `wait-batch-${i}`));
    let writing = true;
    const answered = Promise.all(writes).finally(() => (writing = false));

    // Kubernetes' view meanwhile: every probe ready, and quickly (never behind a WAIT).
    const probes: { status: number; ms: number }[] = [];
    while (writing || probes.length < 5) {
      const started = Date.now();
      const res = await fetch(url('/readyz'));
      await res.arrayBuffer();
      probes.push({ status: res.status, ms: Date.now() - started });
    }
    const results = await answered;

    expect(probes.map((p) => p.status)).toEqual(probes.map(() => 200));
    expect(Math.max(...probes.map((p) => p.ms)), JSON.stringify(probes)).toBeLessThan(WAIT_TIMEOUT_MS / 2);
    // docs/platform.md: fewer replicas than asked within REDIS_WAIT_TIMEOUT_MS → 503 (retryable), not before.
    for (const res of results) {
      expect(res.status).toBe(503);
      expect(res.headers.get('content-type')).toContain('application/problem+json');
      expect(res.headers.get('retry-after')).toBeTruthy();
      expect(res.ms).toBeGreaterThanOrEqual(WAIT_TIMEOUT_MS - 100);
    }

    // The replica back: the same Idempotency-Key now answers 202 (the job kept on the master dedupes).
    await replica.start();
    await attachReplica();
    const retried = await request(url('/v1/orders'), {
      method: 'POST',
      json: sampleOrder({ customerId: 'c-wait-0' }),
      headers: { 'idempotency-key': 'wait-order-0' },
    });
    expect(retried.status).toBe(202);
    const kept = await request(url(`/v1/orders/${retried.body.orderId as string}`));
    expect(kept.status).toBe(200);
  }, 60_000);
});
