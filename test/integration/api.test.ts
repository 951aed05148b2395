import { OrdersQueues } from '../../modules/orders/queue.ts';
import { Queue } from 'bullmq';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { testConfig } from '../support/env.ts';
import { request, sampleOrder } from '../support/http.ts';
import { startPlatform, type Platform } from '../support/platform.ts';

// The API alone, no workers: what it accepts stays in the queue where the test can inspect it.
let platform: Platform;
let queue: Queue;
const url = (path: string) => `${platform.url}${path}`;

beforeAll(async () => {
  platform = await startPlatform(testConfig({ API_BODY_LIMIT_BYTES: '4096', API_BATCH_MAX_ORDERS: '1000' }), {
    workers: [],
  });
  queue = new Queue(OrdersQueues.commands, {
    connection: platform.rt.redis,
    prefix: platform.config.redis.queuePrefix,
  });
});
afterAll(async () => {
  await queue.close();
  await platform.close();
});

describe('POST /v1/orders', () => {
  it('answers 202 with a server-side order id and Location, and enqueues one job carrying the correlation id', async () => {
    const res = await request(url('/v1/orders'), {
      method: 'POST',
      json: sampleOrder(),
      headers: { 'x-correlation-id': 'client-corr-0001' },
    });
    expect(res.status).toBe(202);
    const orderId = res.body.orderId as string;
    expect(orderId).toMatch(/^[0-9a-f-]{36}$/);
    expect(res.body.status).toBe('queued');
    expect(res.headers.get('location')).toBe(`/v1/orders/${orderId}`);
    expect(res.headers.get('x-correlation-id')).toBe('client-corr-0001');
    const job = await queue.getJob(orderId);
    expect(job?.data).toMatchObject({ orderId, correlationId: 'client-corr-0001', order: sampleOrder() });
    expect(job?.opts.attempts).toBe(5);
    // Until a worker picks it up, the order reads as queued.
    const view = await request(url(`/v1/orders/${orderId}`));
    expect(view.status).toBe(200);
    expect(view.body).toMatchObject({ orderId, status: 'queued', totalCents: 2500 });
  });

  it('generates a correlation id when none (or an invalid one) is sent', async () => {
    const res = await request(url('/v1/orders'), {
      method: 'POST',
      json: sampleOrder(),
      headers: { 'x-correlation-id': 'bad id!' },
    });
    expect(res.status).toBe(202);
    expect(res.headers.get('x-correlation-id')).toMatch(/^[0-9a-f-]{36}$/);
  });

  it.each([
    ['missing fields', { customerId: 'c-1' }, ['currency', 'items']],
    ['a client-sent total', { ...sampleOrder(), totalCents: 1 }, ['']],
    [
      'fractional quantity',
      sampleOrder({ items: [{ sku: 's', quantity: 0.5, unitPriceCents: 1 }] }),
      ['items.0.quantity'],
    ],
    ['empty items', sampleOrder({ items: [] }), ['items']],
    ['lowercase currency', sampleOrder({ currency: 'eur' }), ['currency']],
  ])('400 problem+json with field errors for %s', async (_name, body, paths) => {
    const before = await queue.count();
    const res = await request<{ status: number; code: string; errors: { path: string }[] }>(
      url('/v1/orders'),
      {
        method: 'POST',
        json: body,
      },
    );
    expect(res.status).toBe(400);
    expect(res.headers.get('content-type')).toContain('application/problem+json');
    expect(res.body.code).toBe('request.invalid');
    for (const p of paths) expect(res.body.errors.map((e) => e.path).some((x) => x.startsWith(p))).toBe(true);
    expect(await queue.count()).toBe(before);
  });

  it('one error per invalid field, even when a value breaks several rules of it', async () => {
    const res = await request<{ type: string; errors: { path: string; message: string }[] }>(
      url('/v1/orders'),
      {
        method: 'POST',
        json: sampleOrder({ customerId: '', items: [{ sku: 's', quantity: 1e30, unitPriceCents: 1 }] }),
      },
    );
    expect(res.status).toBe(400);
    expect(res.body.type).toBe('https://conveyor.dev/problems/request-invalid');
    expect(res.body.errors).toEqual([
      { path: 'customerId', message: 'Too small: expected string to have >=1 characters' },
      { path: 'items.0.quantity', message: 'Too big: expected number to be <=10000' },
    ]);
  });

  it('400 for malformed JSON, 415 for non-JSON, 413 over the body limit (also chunked), never a stack trace', async () => {
    const malformed = await request(url('/v1/orders'), {
      method: 'POST',
      body: '{"a":',
      headers: { 'content-type': 'application/json' },
    });
    expect(malformed.status).toBe(400);
    expect(malformed.headers.get('content-type')).toContain('application/problem+json');
    expect(malformed.body).toMatchObject({
      code: 'request.malformed',
      type: 'https://conveyor.dev/problems/request-malformed',
    });
    const text = await request(url('/v1/orders'), {
      method: 'POST',
      body: 'hello',
      headers: { 'content-type': 'text/plain' },
    });
    expect(text.status).toBe(415);
    expect(text.body).toMatchObject({
      code: 'request.unsupported_media_type',
      type: 'https://conveyor.dev/problems/request-unsupported-media-type',
    });
    const big = sampleOrder({ customerId: 'c-'.padEnd(8000, 'x') });
    const tooLarge = await request(url('/v1/orders'), { method: 'POST', json: big });
    expect(tooLarge.status).toBe(413);
    expect(tooLarge.headers.get('content-type')).toContain('application/problem+json');
    // The 413 states the limit (API_BODY_LIMIT_BYTES=4096 here).
    expect(tooLarge.body).toMatchObject({
      code: 'request.too_large',
      type: 'https://conveyor.dev/problems/request-too-large',
      detail: 'the request body is over the limit of 4096 bytes',
      limitBytes: 4096,
    });
    const chunks = new ReadableStream({
      start(controller) {
        for (let i = 0; i < 10; i++) controller.enqueue(new TextEncoder().encode('x'.repeat(1000)));
        controller.close();
      },
    });
    const chunked = await fetch(url('/v1/orders'), {
      method: 'POST',
      body: chunks,
      headers: { 'content-type': 'application/json', authorization: 'Bearer dev' },
      duplex: 'half',
    } as RequestInit);
    expect(chunked.status).toBe(413);
    expect(await chunked.json()).toMatchObject({ code: 'request.too_large', limitBytes: 4096 });
    for (const r of [malformed, text, tooLarge])
      expect(JSON.stringify(r.body)).not.toMatch(/\bat .+\.ts:\d+/);
  });
});

describe('Idempotency-Key', () => {
  it('replays the first response for the same key and body, with exactly one job', async () => {
    const key = `key-${Date.now()}`;
    const first = await request(url('/v1/orders'), {
      method: 'POST',
      json: sampleOrder(),
      headers: { 'idempotency-key': key },
    });
    const second = await request(url('/v1/orders'), {
      method: 'POST',
      json: { items: sampleOrder().items, currency: 'EUR', customerId: 'c-42' }, // same body, other key order
      headers: { 'idempotency-key': key },
    });
    expect(first.status).toBe(202);
    expect(second.status).toBe(202);
    expect(second.body).toEqual(first.body);
    expect(second.headers.get('idempotent-replayed')).toBe('true');
    const jobs = await queue.getJobs(['waiting']);
    expect(jobs.filter((j) => j.id === first.body.orderId)).toHaveLength(1);
  });

  it('422 for the same key with a different body', async () => {
    const key = `key-422-${Date.now()}`;
    await request(url('/v1/orders'), {
      method: 'POST',
      json: sampleOrder(),
      headers: { 'idempotency-key': key },
    });
    const res = await request(url('/v1/orders'), {
      method: 'POST',
      json: sampleOrder({ customerId: 'c-43' }),
      headers: { 'idempotency-key': key },
    });
    expect(res.status).toBe(422);
    expect(res.body.code).toBe('idempotency.key_reused');
  });

  it('concurrent requests with one key: one enqueued, the others 409', async () => {
    const key = `key-409-${Date.now()}`;
    const before = await queue.count();
    const results = await Promise.all(
      Array.from({ length: 8 }, () =>
        request(url('/v1/orders'), {
          method: 'POST',
          json: sampleOrder(),
          headers: { 'idempotency-key': key },
        }),
      ),
    );
    const statuses = results.map((r) => r.status);
    expect(statuses.filter((s) => s === 202).length).toBeGreaterThanOrEqual(1);
    expect(statuses.every((s) => s === 202 || s === 409)).toBe(true);
    expect(statuses.filter((s) => s === 409).length).toBeGreaterThanOrEqual(1);
    // Every 202 (first or replay) names the same order, and exactly one job was added.
    expect(new Set(results.filter((r) => r.status === 202).map((r) => r.body.orderId)).size).toBe(1);
    expect(await queue.count()).toBe(before + 1);
  });

  it('rejects keys longer than 255 characters', async () => {
    const res = await request(url('/v1/orders'), {
      method: 'POST',
      json: sampleOrder(),
      headers: { 'idempotency-key': 'k'.repeat(256) },
    });
    expect(res.status).toBe(400);
  });
});

describe('POST /v1/orders/batch', () => {
  it('enqueues the valid orders and reports the invalid ones, one result per item in order', async () => {
    const before = await queue.count();
    const res = await request<{
      orders: (
        { orderId: string; status: string } | { error: { status: number; errors: { path: string }[] } }
      )[];
    }>(url('/v1/orders/batch'), {
      method: 'POST',
      json: { orders: [sampleOrder(), { customerId: 'x' }, sampleOrder({ customerId: 'c-7' })] },
    });
    expect(res.status).toBe(202);
    expect(res.body.orders).toHaveLength(3);
    expect(res.body.orders[0]).toMatchObject({ status: 'queued' });
    expect(res.body.orders[1]).toMatchObject({ error: { status: 400 } });
    expect((res.body.orders[1] as { error: { errors: { path: string }[] } }).error.errors[0]?.path).toMatch(
      /^orders\.1\./,
    );
    expect(res.body.orders[2]).toMatchObject({ status: 'queued' });
    expect(await queue.count()).toBe(before + 2);
  });

  it('reports one error per invalid field of an item', async () => {
    const res = await request<{ orders: { error?: { type: string; errors: unknown[] } }[] }>(
      url('/v1/orders/batch'),
      {
        method: 'POST',
        json: { orders: [sampleOrder({ items: [{ sku: 's', quantity: 1e30, unitPriceCents: 1 }] })] },
      },
    );
    expect(res.status).toBe(202);
    expect(res.body.orders[0]?.error).toMatchObject({
      type: 'https://conveyor.dev/problems/request-invalid',
      errors: [{ path: 'orders.0.items.0.quantity', message: 'Too big: expected number to be <=10000' }],
    });
  });

  it('accepts 1,000 orders and refuses 1,001', async () => {
    const ok = await request<{ orders: unknown[] }>(url('/v1/orders/batch'), {
      method: 'POST',
      json: { orders: Array.from({ length: 1000 }, (_, i) => sampleOrder({ customerId: `bulk-${i}` })) },
    });
    expect(ok.status).toBe(202);
    expect(ok.body.orders).toHaveLength(1000);
    const tooMany = await request(url('/v1/orders/batch'), {
      method: 'POST',
      json: { orders: Array.from({ length: 1001 }, () => sampleOrder()) },
    });
    expect(tooMany.status).toBe(400);
  });
});

describe('queries', () => {
  it('404 problem for an unknown order, 400 for a malformed id', async () => {
    const unknown = await request(url('/v1/orders/00000000-0000-4000-8000-000000000000'));
    expect(unknown.status).toBe(404);
    expect(unknown.body.code).toBe('order.not_found');
    expect(unknown.body.type).toBe('https://conveyor.dev/problems/order-not-found');
    expect((await request(url('/v1/orders/not-a-uuid'))).status).toBe(400);
    const noRoute = await request(url('/v1/nothing-here'));
    expect(noRoute.status).toBe(404);
    expect(noRoute.body).toMatchObject({
      code: 'route.not_found',
      type: 'https://conveyor.dev/problems/route-not-found',
    });
  });

  it('GET /v1/orders?ids= returns many orders in one call and lists the missing', async () => {
    const a = await request(url('/v1/orders'), { method: 'POST', json: sampleOrder() });
    const missing = '00000000-0000-4000-8000-000000000001';
    const res = await request<{ orders: { orderId: string }[]; missing: string[] }>(
      url(`/v1/orders?ids=${a.body.orderId as string},${missing}`),
    );
    expect(res.status).toBe(200);
    expect(res.body.orders.map((o) => o.orderId)).toEqual([a.body.orderId]);
    expect(res.body.missing).toEqual([missing]);
    const tooMany = Array.from(
      { length: 101 },
      (_, i) => `00000000-0000-4000-8000-${String(i).padStart(12, '0')}`,
    );
    expect((await request(url(`/v1/orders?ids=${tooMany.join(',')}`))).status).toBe(400);
  });

  it('serves health, readiness and the OpenAPI document generated from the route schemas', async () => {
    expect((await request(url('/healthz'))).status).toBe(200);
    const ready = await request(url('/readyz'));
    expect(ready.body).toMatchObject({ status: 'ready', checks: { redis: 'ok', postgres: 'ok' } });
    const doc = await request<{
      openapi: string;
      paths: Record<string, unknown>;
      components: { schemas: Record<string, unknown> };
    }>(url('/openapi.json'));
    expect(doc.body.openapi).toBe('3.1.0');
    for (const p of [
      '/v1/orders',
      '/v1/orders/batch',
      '/v1/orders/{orderId}',
      '/v1/customers/{customerId}/orders',
      '/v1/stats',
      '/v1/dead-letters',
    ]) {
      expect(Object.keys(doc.body.paths)).toContain(p);
    }
    expect(doc.body.components.schemas.PlaceOrder).toBeDefined();
  });
});
