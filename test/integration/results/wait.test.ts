import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RedisNode } from '../../../shared/queue/redis.ts';
import { eventually, testConfig } from '../../support/env.ts';
import { startFakePayment, type FakePayment } from '../../support/fake-payment.ts';
import { request, sampleOrder } from '../../support/http.ts';
import { startReplicas, type Replicas } from './replicas.ts';

// `Prefer: wait` (issue #22) through two API replicas that share only Redis and PostgreSQL: replica A
// runs the real workers, replica B is an API alone whose hub hears them through Redis pub/sub.
let fake: FakePayment;
let replicas: Replicas;

beforeAll(async () => {
  fake = await startFakePayment({ mode: 'approve', declineCustomerIds: ['c-declined'] });
  replicas = await startReplicas(testConfig({ PAYMENT_URL: fake.url, ORDERS_BACKOFF_MS: '1000' }));
});
afterAll(async () => {
  await replicas?.close();
  await fake?.close();
});

const prefer = (seconds: number) => ({ prefer: `wait=${seconds}` });

describe('Prefer: wait', () => {
  it('answers a POST with the final completed state, 201 and Preference-Applied (and a declined payment as rejected)', async () => {
    const { a } = replicas;
    const res = await request(`${a.url}/v1/orders`, {
      method: 'POST',
      json: sampleOrder(),
      headers: prefer(10),
    });
    expect(res.status).toBe(201);
    expect(res.headers.get('preference-applied')).toBe('wait=10');
    const orderId = res.body.orderId as string;
    expect(res.headers.get('location')).toBe(`/v1/orders/${orderId}`);
    expect(res.body).toMatchObject({ orderId, status: 'completed', totalCents: 2500, attempts: 1 });

    const declined = await request(`${a.url}/v1/orders`, {
      method: 'POST',
      json: sampleOrder({ customerId: 'c-declined' }),
      headers: prefer(10),
    });
    expect(declined.status).toBe(201);
    expect(declined.headers.get('preference-applied')).toBe('wait=10');
    expect(declined.body).toMatchObject({ status: 'rejected' });
    // Every module's command: a refund's POST (its 202 points at /v1/refunds/{id}) waits the same way.
    const refund = await request(`${a.url}/v1/orders/${orderId}/refunds`, {
      method: 'POST',
      json: { amountCents: 500, reason: 'damaged' },
      headers: prefer(10),
    });
    expect(refund.status).toBe(201);
    expect(refund.headers.get('preference-applied')).toBe('wait=10');
    expect(refund.body).toMatchObject({ orderId, status: 'completed', amountCents: 500 });
    expect(refund.headers.get('location')).toBe(`/v1/refunds/${refund.body.refundId as string}`);
    // Without the preference, as before.
    const plain = await request(`${a.url}/v1/orders`, { method: 'POST', json: sampleOrder() });
    expect(plain.status).toBe(202);
    expect(plain.headers.get('preference-applied')).toBeNull();
  });

  it('answers on the replica whose hub heard it: POST on A, GET with the wait on B; POST with the wait on B', async () => {
    const { a, b } = replicas;
    // Held by the payment service so that B's wait starts before the decision.
    fake.set({ mode: 'slow', delayMs: 800 });
    const posted = await request(`${a.url}/v1/orders`, { method: 'POST', json: sampleOrder() });
    expect(posted.status).toBe(202);
    const location = posted.headers.get('location')!;
    const started = Date.now();
    const waited = await request(`${b.url}${location}`, { headers: prefer(10) });
    expect(waited.status).toBe(200);
    expect(waited.headers.get('preference-applied')).toBe('wait=10');
    expect(waited.body).toMatchObject({ orderId: posted.body.orderId, status: 'completed' });
    expect(Date.now() - started).toBeLessThan(8_000);

    const onB = await request(`${b.url}/v1/orders`, {
      method: 'POST',
      json: sampleOrder(),
      headers: prefer(10),
    });
    expect(onB.status).toBe(201);
    expect(onB.body).toMatchObject({ status: 'completed' });
    fake.set({ mode: 'approve', declineCustomerIds: ['c-declined'] });
    await eventually(() => b.api.outcomes.listening === 0 && a.api.outcomes.listening === 0, {
      what: 'no listener left',
    });
  });

  it('does not leave a waiter hanging when its message was missed while the subscriber reconnected', async () => {
    const { a, b } = replicas;
    fake.set({ mode: 'slow', delayMs: 1_500 });
    const posted = await request(`${a.url}/v1/orders`, { method: 'POST', json: sampleOrder() });
    const orderId = posted.body.orderId as string;
    const started = Date.now();
    const waiting = request(`${b.url}/v1/orders/${orderId}`, { headers: prefer(20) });
    await eventually(() => b.api.outcomes.listening === 1, { what: "B's waiter" });
    // Cut B's subscriber and keep it away for 3 s: the decision (at ~1.5 s) is published while no
    // subscriber of B listens. Only the re-check after the resubscribe can answer the waiter.
    const sub = b.api.outcomes.connection as RedisNode;
    sub.options.retryStrategy = () => 3_000;
    const port = sub.stream.localPort;
    expect(await a.rt.redis.call('CLIENT', 'KILL', 'ADDR', `127.0.0.1:${port}`)).toBe(1);
    expect((await request(`${a.url}/v1/orders/${orderId}`)).body.status).not.toBe('completed');
    await eventually(
      async () => (await request(`${a.url}/v1/orders/${orderId}`)).body.status === 'completed',
      {
        what: 'the decision while B is unsubscribed',
      },
    );
    const res = await waiting;
    expect(res.status).toBe(200);
    expect(res.headers.get('preference-applied')).toBe('wait=20');
    expect(res.body).toMatchObject({ orderId, status: 'completed' });
    // Well before the 20 s timeout: at the resubscribe, ~3 s after the cut.
    expect(Date.now() - started).toBeLessThan(10_000);
    fake.set({ mode: 'approve', declineCustomerIds: ['c-declined'] });
  });
});

describe('Prefer: wait with no worker running', () => {
  let alone: Replicas;
  beforeAll(async () => {
    alone = await startReplicas(testConfig(), {
      workers: false,
      results: { waitMaxSeconds: 2, maxStreams: 1 },
    });
  });
  afterAll(async () => {
    await alone?.close();
  });

  it('times out to the usual 202 / 200 without Preference-Applied, bounded by the maximum, and leaks no waiter', async () => {
    const { a, b } = alone;
    let started = Date.now();
    const res = await request(`${a.url}/v1/orders`, {
      method: 'POST',
      json: sampleOrder(),
      headers: prefer(1),
    });
    expect(res.status).toBe(202);
    expect(res.body).toMatchObject({ status: 'queued' });
    expect(res.headers.get('preference-applied')).toBeNull();
    expect(Date.now() - started).toBeGreaterThanOrEqual(900);
    expect(Date.now() - started).toBeLessThan(1_900);
    // A wait past RESULTS_WAIT_MAX_SECONDS (2 here) waits that long, on the other replica too.
    started = Date.now();
    const read = await request(`${b.url}/v1/orders/${res.body.orderId as string}`, { headers: prefer(60) });
    expect(read.status).toBe(200);
    expect(read.body).toMatchObject({ status: 'queued' });
    expect(read.headers.get('preference-applied')).toBeNull();
    expect(read.headers.get('vary')).toMatch(/prefer/i);
    expect(Date.now() - started).toBeGreaterThanOrEqual(1_900);
    expect(Date.now() - started).toBeLessThan(3_000);
    // An unknown command is not waited for.
    started = Date.now();
    const unknown = await request(`${b.url}/v1/orders/00000000-0000-4000-8000-000000000000`, {
      headers: prefer(2),
    });
    expect(unknown.status).toBe(404);
    expect(Date.now() - started).toBeLessThan(1_000);
    expect(a.api.outcomes.listening).toBe(0);
    expect(b.api.outcomes.listening).toBe(0);
  });

  it('bounds the open streams per process: past RESULTS_MAX_STREAMS, 503 with Retry-After; a closed one is let go', async () => {
    const { a } = alone;
    const posted = await request(`${a.url}/v1/orders`, { method: 'POST', json: sampleOrder() });
    const path = `${a.url}/v1/orders/${posted.body.orderId as string}/events`;
    const open = new AbortController();
    const first = await fetch(path, { headers: { authorization: 'Bearer dev' }, signal: open.signal });
    expect(first.status).toBe(200);
    const second = await fetch(path, { headers: { authorization: 'Bearer dev' } });
    expect(second.status).toBe(503);
    expect(second.headers.get('retry-after')).toBe('5');
    await second.text();
    open.abort();
    await eventually(() => a.api.outcomes.listening === 0, { what: 'the stream to be let go' });
    const again = await fetch(path, {
      headers: { authorization: 'Bearer dev' },
      signal: AbortSignal.timeout(5_000),
    });
    expect(again.status).toBe(200);
    await again.body?.cancel();
  });
});
