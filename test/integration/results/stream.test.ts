import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createOutcomePublisher, outcomeChannel } from '../../../shared/results/wire.ts';
import type { EventEnvelope } from '../../../shared/domain/events.ts';
import { createProjector } from '../../../workers/projections/projector.ts';
import { eventually, testConfig, testLogger, TEST_REDIS_URL } from '../../support/env.ts';
import { startFakePayment, type FakePayment } from '../../support/fake-payment.ts';
import { request, sampleOrder } from '../../support/http.ts';
import { readEvents, startReplicas, type Replicas, type SseEvent } from './replicas.ts';

// A command's lifecycle as Server-Sent Events (issue #22), served by two API replicas that share only
// Redis and PostgreSQL; the real workers run beside replica A.
let fake: FakePayment;
let replicas: Replicas;

beforeAll(async () => {
  fake = await startFakePayment('approve');
  replicas = await startReplicas(testConfig({ PAYMENT_URL: fake.url, ORDERS_BACKOFF_MS: '1000' }), {
    // Short heartbeats: the stream also looks for the projection on each one.
    results: { heartbeatMs: 200, projectedWaitMs: 10_000 },
  });
});
afterAll(async () => {
  await replicas?.close();
  await fake?.close();
});

const events = (url: string, headers: Record<string, string> = {}) =>
  fetch(url, { headers: { authorization: 'Bearer dev', ...headers } });
const ids = (list: readonly SseEvent[]) => list.map((e) => e.id);

describe('GET /v1/orders/{orderId}/events', () => {
  it('streams every step in order with its id, a retry with its error; resumed with Last-Event-ID on the other replica it sends exactly the rest, then ends', async () => {
    const { a, b } = replicas;
    // The payment service refuses the first call (400: a retry, an attempt used), then approves.
    fake.set('bad-request');
    const posted = await request(`${a.url}/v1/orders`, { method: 'POST', json: sampleOrder() });
    const orderId = posted.body.orderId as string;
    const first = await events(`${a.url}/v1/orders/${orderId}/events`);
    expect(first.status).toBe(200);
    expect(first.headers.get('content-type')).toMatch(/^text\/event-stream/);
    // Disconnect mid-stream, right after the retry.
    const before = await readEvents(first, (list) => list.some((e) => e.event === 'retried'));
    expect(before.ended).toBe(false);
    expect(ids(before.events)).toEqual(['accepted', 'started.1', 'retried.1']);
    const retried = JSON.parse(before.events[2]!.data) as { attempt: number; error: string };
    expect(retried).toMatchObject({ id: orderId, attempt: 1 });
    expect(retried.error).toMatch(/payment service refused the request: 400/);
    fake.set('approve');
    await eventually(() => a.api.outcomes.listening === 0, { what: "A's stream to let go" });

    const resumed = await events(`${b.url}/v1/orders/${orderId}/events`, { 'last-event-id': 'retried.1' });
    expect(resumed.status).toBe(200);
    const after = await readEvents(resumed);
    expect(after.ended).toBe(true);
    expect(ids(after.events)).toEqual(['started.2', 'completed', 'projected']);
    expect(after.events.map((e) => e.event)).toEqual(['started', 'completed', 'projected']);
    expect(JSON.parse(after.events[1]!.data)).toMatchObject({ orderId, status: 'completed', attempts: 2 });
    expect(JSON.parse(after.events[2]!.data).updatedAt).not.toBeNull();
    expect(b.api.outcomes.listening).toBe(0);
  });

  it('replays a decided command from durable state on any replica, resumes past the end with nothing, and 404s an unknown one', async () => {
    const { a, b } = replicas;
    const posted = await request(`${a.url}/v1/orders`, {
      method: 'POST',
      json: sampleOrder(),
      headers: { prefer: 'wait=10' },
    });
    expect(posted.status).toBe(201);
    const orderId = posted.body.orderId as string;
    await eventually(async () => (await request(`${b.url}/v1/orders/${orderId}`)).body.updatedAt !== null);
    const whole = await readEvents(await events(`${b.url}/v1/orders/${orderId}/events`));
    expect(whole.ended).toBe(true);
    expect(ids(whole.events)).toEqual(['accepted', 'started.1', 'completed', 'projected']);
    const past = await readEvents(
      await events(`${a.url}/v1/orders/${orderId}/events`, { 'last-event-id': 'projected' }),
    );
    expect(past).toEqual({ events: [], ended: true });
    // Every module's command: a refund's stream, generic in the core.
    const refund = await request(`${a.url}/v1/orders/${orderId}/refunds`, {
      method: 'POST',
      json: { amountCents: 100 },
    });
    expect(refund.status).toBe(202);
    const refundStream = await readEvents(
      await events(`${b.url}/v1/refunds/${refund.body.refundId as string}/events`),
    );
    expect(refundStream.ended).toBe(true);
    expect(ids(refundStream.events).slice(-2)).toEqual(['completed', 'projected']);
    const unknown = await events(`${b.url}/v1/orders/00000000-0000-4000-8000-000000000000/events`);
    expect(unknown.status).toBe(404);
    expect(unknown.headers.get('content-type')).toMatch(/problem\+json/);
  });

  it('the projector publishes a projected step per command of a committed batch', async () => {
    const { a } = replicas;
    const { config } = a.rt;
    const sub = new Redis(TEST_REDIS_URL);
    const publisher = new Redis(TEST_REDIS_URL);
    try {
      const heard: string[] = [];
      sub.on('message', (_channel: string, text: string) => heard.push(text));
      await sub.subscribe(outcomeChannel(config.redis.queuePrefix, 'orders'));
      const posted = await request(`${a.url}/v1/orders`, {
        method: 'POST',
        json: sampleOrder(),
        headers: { prefer: 'wait=10' },
      });
      const orderId = posted.body.orderId as string;
      // The platform's own projector projects it first (its message is heard here too): only then is
      // every message heard below this test's projector's.
      await eventually(() => heard.some((t) => t.includes('"projected"') && t.includes(orderId)), {
        what: 'projected by the platform',
      });
      heard.length = 0;
      const { rows } = await a.rt.pool.query<{ envelope: EventEnvelope }>(
        'SELECT envelope FROM outbox WHERE aggregate_id = $1 ORDER BY id',
        [orderId],
      );
      expect(rows.length).toBeGreaterThan(0);
      const projector = createProjector({
        pool: a.rt.pool,
        logger: testLogger(),
        batchSize: 10,
        batchWaitMs: 5,
        outcomes: createOutcomePublisher(publisher, config.redis.queuePrefix),
      });
      // Already projected: the inbox skips them, the commit still tells the hub.
      await Promise.all(rows.map((r) => projector.handle(r.envelope, { attempt: 1, transport: 'bullmq' })));
      await projector.drain();
      const message = await eventually(() => heard.find((t) => t.includes('"projected"')), {
        what: 'projected',
      });
      const parsed = JSON.parse(message) as { steps: { id: string; step: string }[] };
      expect(parsed.steps).toContainEqual({ id: orderId, step: 'projected' });
      // One message for the batch, not one per event.
      expect(heard.filter((t) => t.includes('"projected"'))).toHaveLength(1);
    } finally {
      sub.disconnect();
      publisher.disconnect();
    }
  });
});
