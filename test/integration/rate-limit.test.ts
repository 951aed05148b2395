import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { Ajv2020 } from 'ajv/dist/2020.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../shared/config/config.ts';
import { generateApiKey } from '../../shared/security/api-keys.ts';
import { isolatedEnv, testConfig } from '../support/env.ts';
import { request, sampleOrder, type JsonResponse } from '../support/http.ts';
import { cleanup, startPlatform, type Platform } from '../support/platform.ts';
import { MODULES } from '../../modules/registry.ts';

// Reads and writes have budgets (and Redis counters) of their own, an API_KEYS entry may carry its own
// budgets, and the development key is generous: what a job API's producers need (issue #12, point 8).

const shop = generateApiKey('shop', ['orders:write', 'orders:read']); // the defaults: 4 writes, 6 reads
const big = generateApiKey('big', ['orders:write', 'orders:read'], { writes: 7, reads: 2 });
const tiny = generateApiKey('tiny', ['orders:read'], { reads: 1 });
const bearer = (k: { key: string }) => ({ authorization: `Bearer ${k.key}` });

function budgetHeaders(res: JsonResponse) {
  return {
    limit: res.headers.get('ratelimit-limit'),
    remaining: res.headers.get('ratelimit-remaining'),
    policy: res.headers.get('ratelimit-policy'),
  };
}

describe('rate limits: separate read and write budgets, per-key limits', () => {
  let platform: Platform;
  const url = (path: string) => `${platform.url}${path}`;

  beforeAll(async () => {
    platform = await startPlatform(
      testConfig({
        API_KEYS: [shop.entry, big.entry, tiny.entry].join(','),
        RATE_LIMIT_MAX: '4',
        RATE_LIMIT_READ_MAX: '6',
        RATE_LIMIT_WINDOW_MS: '60000',
      }),
      { workers: [] },
    );
  });
  afterAll(async () => {
    await platform.close();
  });

  it('a read never consumes the write budget, a write never the read budget; 429 names the budget', async () => {
    const read = () => request(url('/v1/stats'), { headers: bearer(shop) });
    const write = () =>
      request<{ orderId: string }>(url('/v1/orders'), {
        method: 'POST',
        json: sampleOrder(),
        headers: bearer(shop),
      });
    for (let i = 0; i < 3; i++) expect((await read()).status).toBe(200);

    const writes = [];
    for (let i = 0; i < 5; i++) writes.push(await write());
    expect(writes.map((r) => r.status)).toEqual([202, 202, 202, 202, 429]);
    // Three reads before did not touch the writes: 4 of 4 left at the first write.
    expect(budgetHeaders(writes[0]!)).toEqual({ limit: '4', remaining: '3', policy: '4;w=60' });
    const tooMany = writes[4]!;
    expect(budgetHeaders(tooMany)).toEqual({ limit: '4', remaining: '0', policy: '4;w=60' });
    expect(tooMany.headers.get('retry-after')).toMatch(/^[1-9]\d*$/);
    expect(tooMany.headers.get('content-type')).toContain('application/problem+json');
    expect(tooMany.body).toMatchObject({
      type: 'https://conveyor.dev/problems/rate-limit-exceeded',
      code: 'rate_limit.exceeded',
      status: 429,
      budget: 'writes',
      limit: 4,
      windowSeconds: 60,
    });
    expect((tooMany.body as unknown as { detail: string }).detail).toMatch(
      /^write budget exhausted: .*4 writes .* per 60 s/,
    );

    // Writes spent, the order still reads back; the five writes left the reads where they were.
    const orderId = writes[0]!.body.orderId;
    const back = await request(url(`/v1/orders/${orderId}`), { headers: bearer(shop) });
    expect(back.status).toBe(200);
    expect(budgetHeaders(back)).toEqual({ limit: '6', remaining: '2', policy: '6;w=60' });
    // HEAD is a read too.
    const head = await fetch(url(`/v1/orders/${orderId}`), { method: 'HEAD', headers: bearer(shop) });
    expect(head.status).toBe(200);
    expect(head.headers.get('ratelimit-remaining')).toBe('1');
    expect((await read()).status).toBe(200);
    const readsOut = await read();
    expect(readsOut.status).toBe(429);
    expect(readsOut.body).toMatchObject({ budget: 'reads', limit: 6, windowSeconds: 60 });
    expect(readsOut.body.detail).toMatch(/^read budget exhausted: /);
    expect(budgetHeaders(readsOut)).toEqual({ limit: '6', remaining: '0', policy: '6;w=60' });
  });

  it("a key's own limits apply, sessions included; DELETE is a write, OPTIONS is not counted", async () => {
    const stats = await request(url('/v1/stats'), { headers: bearer(big) });
    expect(budgetHeaders(stats)).toEqual({ limit: '2', remaining: '1', policy: '2;w=60' });
    const opened = await request<{ sessionId: string }>(url('/v1/sessions'), {
      method: 'POST',
      headers: bearer(big),
    });
    expect(opened.status).toBe(201);
    expect(budgetHeaders(opened)).toEqual({ limit: '7', remaining: '6', policy: '7;w=60' });
    const preflight = await fetch(url('/v1/orders'), { method: 'OPTIONS', headers: bearer(big) });
    expect(preflight.headers.get('ratelimit-limit')).toBeNull();
    // The session's requests count against the key that opened it.
    const session = { 'x-session-id': opened.body.sessionId };
    expect(budgetHeaders(await request(url('/v1/stats'), { headers: session }))).toMatchObject({
      remaining: '0',
    });
    const logout = await request(url('/v1/sessions/current'), { method: 'DELETE', headers: session });
    expect(logout.status).toBe(204);
    expect(budgetHeaders(logout)).toEqual({ limit: '7', remaining: '5', policy: '7;w=60' });
  });

  it('the OpenAPI document lists the 429 of every /v1 operation, and the 429 matches its Problem schema', async () => {
    const doc = await request<OpenApiDoc>(url('/openapi.json'));
    expect(doc.status).toBe(200);
    expect(doc.body.openapi).toBe('3.1.0');
    const operations = Object.entries(doc.body.paths)
      .filter(([path]) => path.startsWith('/v1/'))
      .flatMap(([path, ops]) => Object.entries(ops).map(([method, op]) => ({ path, method, op })));
    expect(operations.filter((o) => o.method === 'get').length).toBeGreaterThanOrEqual(6);
    for (const { path, method, op } of operations) {
      const tooMany = op.responses['429'];
      expect(tooMany, `${method} ${path}`).toBeDefined();
      expect(Object.keys(tooMany?.headers ?? {})).toEqual(
        expect.arrayContaining(['Retry-After', 'RateLimit-Limit', 'RateLimit-Policy']),
      );
    }
    // Every schema of the document compiles as JSON Schema 2020-12 (what OpenAPI 3.1 uses) …
    const ajv = new Ajv2020({ strict: false, allErrors: true });
    ajv.addVocabulary(['example', 'discriminator', 'xml', 'externalDocs']);
    for (const [name, schema] of Object.entries(doc.body.components.schemas)) {
      ajv.addSchema(schema, `#/components/schemas/${name}`);
    }
    const problemSchema = ajv.getSchema('#/components/schemas/Problem')!;
    // … and what the API answers over a budget is what the document says.
    expect((await request(url('/v1/stats'), { headers: bearer(tiny) })).status).toBe(200);
    const over = await request(url('/v1/stats'), { headers: bearer(tiny) });
    expect(over.status).toBe(429);
    expect(problemSchema(over.body), JSON.stringify(problemSchema.errors)).toBe(true);
    expect(over.body).toMatchObject({ budget: 'reads', limit: 1 });
  });
});

interface OpenApiDoc {
  openapi: string;
  paths: Record<string, Record<string, { responses: Record<string, { headers?: Record<string, unknown> }> }>>;
  components: { schemas: Record<string, object> };
}

describe('rate limits of the development key', () => {
  let platform: Platform;

  beforeAll(async () => {
    // The production defaults (100 writes, 1,000 reads), no API_KEYS: only the dev key is accepted.
    platform = await startPlatform(
      testConfig({ API_KEYS: '', RATE_LIMIT_MAX: '100', RATE_LIMIT_READ_MAX: '1000' }),
      { workers: [] },
    );
  });
  afterAll(async () => {
    await platform.close();
  });

  it('150 quick orders are all accepted and read back at once: 10,000 writes and reads a window', async () => {
    const posted = await Promise.all(
      Array.from({ length: 150 }, (_, i) =>
        request<{ orderId: string }>(`${platform.url}/v1/orders`, {
          method: 'POST',
          json: sampleOrder({ customerId: `c-${i}` }),
        }),
      ),
    );
    expect(posted.filter((r) => r.status !== 202).map((r) => r.status)).toEqual([]);
    expect(posted[0]!.headers.get('ratelimit-policy')).toBe('10000;w=60');
    const ids = posted.map((r) => r.body.orderId);
    const back = await request<{ orders: unknown[] }>(
      `${platform.url}/v1/orders?ids=${ids.slice(0, 100).join(',')}`,
    );
    expect(back.status).toBe(200);
    expect(back.body.orders).toHaveLength(100);
    expect(budgetHeaders(back)).toEqual({ limit: '10000', remaining: '9999', policy: '10000;w=60' });
  });
});

describe('API_KEYS limits are validated at start', () => {
  it('an entry with malformed limits stops the API with a message naming the entry', async () => {
    // Every malformed form is covered by test/unit/api-keys.test.ts; this is the process refusing to start.
    const env = isolatedEnv({ API_KEYS: `${big.entry},${shop.entry}:0/5`, LOG_LEVEL: 'info' });
    const run = spawnSync(process.execPath, ['--import', 'tsx', 'api/main.ts'], {
      cwd: fileURLToPath(new URL('../../', import.meta.url)),
      env: { ...process.env, ...env },
      encoding: 'utf8',
      timeout: 30_000,
    });
    await cleanup(loadConfig(env, { modules: MODULES }));
    expect(run.status).toBe(1);
    expect(run.stderr + run.stdout).toMatch(
      /API_KEYS entry 2 \(shop\): the writes limit must be a whole number from 1 to 1000000000/,
    );
  });
});
