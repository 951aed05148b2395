import { OrdersQueues } from '../../modules/orders/queue.ts';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { Queue } from 'bullmq';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../shared/config/config.ts';
import { generateApiKey } from '../../shared/security/api-keys.ts';
import { eventually, isolatedEnv } from '../support/env.ts';
import { request, sampleOrder } from '../support/http.ts';
import { cleanup, startPlatform, type Platform } from '../support/platform.ts';
import { startServer, type Proc } from '../support/processes.ts';
import { MODULES } from '../../modules/registry.ts';

const writer = generateApiKey('shop', ['orders:write']);
const reader = generateApiKey('reports', ['orders:read']);
const admin = generateApiKey('ops', ['admin']);
const producer = generateApiKey('producer', ['orders:write', 'orders:read']);
const bearer = (k: { key: string }) => ({ authorization: `Bearer ${k.key}` });

describe('API keys and sessions', () => {
  const env = isolatedEnv({ API_KEYS: [writer.entry, reader.entry, admin.entry].join(',') });
  let a: Platform;
  let b: Platform;
  let queue: Queue;

  beforeAll(async () => {
    a = await startPlatform(loadConfig(env, { modules: MODULES }), { workers: [] });
    b = await startPlatform(loadConfig(env, { modules: MODULES }), { workers: [] }); // a second replica, same Redis
    queue = new Queue(OrdersQueues.commands, { connection: a.rt.redis, prefix: env.QUEUE_PREFIX });
  });
  afterAll(async () => {
    await queue.close();
    await b.close({ keep: true });
    await a.close();
  });

  it('401 without or with a wrong key, 403 with the wrong scope, nothing enqueued', async () => {
    const post = (headers: Record<string, string>) =>
      request(`${a.url}/v1/orders`, { method: 'POST', json: sampleOrder(), headers });
    const none = await request(`${a.url}/v1/orders`, {
      method: 'POST',
      json: sampleOrder(),
      headers: { 'x-session-id': 'x'.repeat(43) },
    });
    expect(none.status).toBe(401);
    expect(none.headers.get('www-authenticate')).toMatch(/^Bearer/);
    expect((await post({ authorization: 'Bearer dev' })).status).toBe(401); // no dev key once keys exist
    expect((await post({ authorization: `Bearer ${writer.key}x` })).status).toBe(401);
    expect((await post({ authorization: 'Basic abc' })).status).toBe(401);
    const forbidden = await post(bearer(reader));
    expect(forbidden.status).toBe(403);
    expect(forbidden.body.code).toBe('auth.forbidden');
    expect(await queue.count()).toBe(0);
    expect((await post(bearer(writer))).status).toBe(202);
    expect(await queue.count()).toBe(1);
  });

  it('scopes: readers read, writers cannot read dead letters, admins can', async () => {
    expect((await request(`${a.url}/v1/stats`, { headers: bearer(reader) })).status).toBe(200);
    expect((await request(`${a.url}/v1/stats`, { headers: bearer(writer) })).status).toBe(403);
    expect((await request(`${a.url}/v1/dead-letters`, { headers: bearer(reader) })).status).toBe(403);
    expect((await request(`${a.url}/v1/dead-letters`, { headers: bearer(admin) })).status).toBe(200);
    // Health and the OpenAPI document stay public for probes and clients.
    expect((await fetch(`${a.url}/readyz`)).status).toBe(200);
    expect((await fetch(`${a.url}/openapi.json`)).status).toBe(200);
  });

  it('a session lives in Redis: opened on one replica, served by the other, gone after logout', async () => {
    const opened = await request<{ sessionId: string; expiresInSeconds: number }>(`${a.url}/v1/sessions`, {
      method: 'POST',
      headers: bearer(reader),
    });
    expect(opened.status).toBe(201);
    const session = { 'x-session-id': opened.body.sessionId };
    expect((await request(`${b.url}/v1/stats`, { headers: session })).status).toBe(200);
    expect(
      (await request(`${b.url}/v1/orders`, { method: 'POST', json: sampleOrder(), headers: session })).status,
    ).toBe(403);
    expect(
      (await request(`${b.url}/v1/sessions/current`, { method: 'DELETE', headers: session })).status,
    ).toBe(204);
    expect((await request(`${a.url}/v1/stats`, { headers: session })).status).toBe(401);
  });
});

describe('scopes declared by modules', () => {
  // The refunds module declares the orders' scopes (modules/refunds/module.ts): a producer key that
  // places orders refunds them and reads the refund its 202 points to — no admin key needed.
  const env = isolatedEnv({ API_KEYS: [producer.entry, reader.entry].join(',') });
  let platform: Platform;

  beforeAll(async () => {
    platform = await startPlatform(loadConfig(env, { modules: MODULES }), { workers: ['orders', 'refunds'] });
  });
  afterAll(async () => {
    await platform?.close();
  });

  it('a key with only orders:write+orders:read creates a refund and reads it at its Location', async () => {
    const placed = await request(`${platform.url}/v1/orders`, {
      method: 'POST',
      json: sampleOrder(),
      headers: bearer(producer),
    });
    expect(placed.status).toBe(202);
    const orderId = placed.body.orderId as string;
    await eventually(
      async () =>
        (await request(`${platform.url}/v1/orders/${orderId}`, { headers: bearer(producer) })).body.status ===
        'completed',
      { what: `order ${orderId} to be completed` },
    );

    const refund = await request(`${platform.url}/v1/orders/${orderId}/refunds`, {
      method: 'POST',
      json: { amountCents: 100, reason: 'scope check' },
      headers: bearer(producer),
    });
    expect(refund.status).toBe(202);
    const location = refund.headers.get('location');
    expect(location).toBe(`/v1/refunds/${refund.body.refundId as string}`);
    const read = await request(`${platform.url}${location}`, { headers: bearer(producer) });
    expect({ status: read.status, body: read.body }).toMatchObject({
      status: 200,
      body: { refundId: refund.body.refundId, orderId },
    });
    // …and once decided, still with the same key; a read-only key reads it but cannot refund.
    await eventually(
      async () =>
        (await request(`${platform.url}${location}`, { headers: bearer(producer) })).body.status ===
        'completed',
      { what: 'the refund to be decided' },
    );
    expect((await request(`${platform.url}${location}`, { headers: bearer(reader) })).status).toBe(200);
    const refused = await request(`${platform.url}/v1/orders/${orderId}/refunds`, {
      method: 'POST',
      json: { amountCents: 100 },
      headers: bearer(reader),
    });
    expect({ status: refused.status, code: refused.body.code }).toEqual({
      status: 403,
      code: 'auth.forbidden',
    });
    // Operators' routes still need admin.
    expect((await request(`${platform.url}/v1/dead-letters`, { headers: bearer(producer) })).status).toBe(
      403,
    );
  });
});

describe('rate limits shared by API replicas', () => {
  const env = isolatedEnv({
    API_KEYS: [writer.entry, reader.entry].join(','),
    RATE_LIMIT_MAX: '6',
    RATE_LIMIT_READ_MAX: '6',
    RATE_LIMIT_WINDOW_MS: '60000',
  });
  let one: Proc & { url: string };
  let two: Proc & { url: string };

  beforeAll(async () => {
    [one, two] = await Promise.all([startServer('api/main.ts', env), startServer('api/main.ts', env)]);
  });
  afterAll(async () => {
    await Promise.all([one?.kill(), two?.kill()]);
    await cleanup(loadConfig(env, { modules: MODULES }));
  });

  it('counts one key across two processes: 429 with Retry-After and RateLimit-* headers; other keys unaffected', async () => {
    const statuses: number[] = [];
    let last;
    for (let i = 0; i < 8; i++) {
      last = await request(`${(i % 2 ? one : two).url}/v1/stats`, { headers: bearer(reader) });
      statuses.push(last.status);
    }
    expect(statuses).toEqual([200, 200, 200, 200, 200, 200, 429, 429]);
    expect(last!.headers.get('retry-after')).toMatch(/^\d+$/);
    expect(last!.headers.get('ratelimit-limit')).toBe('6');
    expect(last!.headers.get('ratelimit-remaining')).toBe('0');
    expect(last!.headers.get('ratelimit-policy')).toBe('6;w=60');
    expect(last!.headers.get('content-type')).toContain('application/problem+json');
    expect(last!.body).toMatchObject({ code: 'rate_limit.exceeded', budget: 'reads', limit: 6 });
    // A spoofed forwarding header does not buy a new budget; another key has its own.
    expect(
      (await request(`${one.url}/v1/stats`, { headers: { ...bearer(reader), 'x-forwarded-for': '1.2.3.4' } }))
        .status,
    ).toBe(429);
    const other = await request(`${one.url}/v1/orders`, {
      method: 'POST',
      json: sampleOrder(),
      headers: bearer(writer),
    });
    expect(other.status).toBe(202);
    expect(other.headers.get('ratelimit-remaining')).toBe('5');
  });
});

describe('production safety', () => {
  it('refuses to start in production without API keys', () => {
    // REDIS_REQUIRE_AOF=false: the test Redis is not persistent, and this is about the keys.
    const env = isolatedEnv({
      NODE_ENV: 'production',
      API_KEYS: '',
      LOG_LEVEL: 'info',
      REDIS_REQUIRE_AOF: 'false',
    });
    const run = spawnSync(process.execPath, ['--import', 'tsx', 'api/main.ts'], {
      cwd: fileURLToPath(new URL('../../', import.meta.url)),
      env: { ...process.env, ...env },
      encoding: 'utf8',
      timeout: 30_000,
    });
    expect(run.status).toBe(1);
    expect(run.stderr).toMatch(/API_KEYS is empty/);
  });
});
