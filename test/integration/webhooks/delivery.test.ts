import { randomUUID } from 'node:crypto';
import { Webhook } from 'standardwebhooks';
import { webhooksModule } from '../../../modules/webhooks/module.ts';
import { createFanOut } from '../../../modules/webhooks/worker/fan-out.ts';
import type { Delivery } from '../../../shared/bus/event-bus.ts';
import { createCommandQueue } from '../../../shared/queue/command-queue.ts';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Config } from '../../../shared/config/config.ts';
import { eventually, testConfig } from '../../support/env.ts';
import { request, sampleOrder } from '../../support/http.ts';
import { startPlatform, type Platform } from '../../support/platform.ts';
import { startReceiver, type Receiver } from './receiver.ts';

// Webhooks end to end on the platform itself: an order's event → the bus's `webhooks` group →
// a delivery job per endpoint on queue `webhooks` → a signed POST to a real HTTP receiver, verified
// with an independent Standard Webhooks implementation (npm `standardwebhooks`). Each scenario
// is its own sub-tenant of the development key, so its endpoint sees only its own orders.
type Body = Record<string, unknown>;
const delivery: Delivery = { attempt: 1, transport: 'bullmq' };

describe('webhooks: signed deliveries, retries, dead letters and redrive', () => {
  let platform: Platform;
  const receivers: Receiver[] = [];
  const url = (path: string) => `${platform.url}${path}`;
  const as = (tenant: string) => ({ 'conveyor-tenant': tenant });

  async function register(tenant: string, target: string, eventTypes = ['order.placed']) {
    const res = await request(url('/v1/webhooks'), {
      method: 'POST',
      headers: as(tenant),
      json: { url: target, eventTypes, description: `receiver of ${tenant}` },
    });
    expect(res.status, JSON.stringify(res.body)).toBe(201);
    return res.body as { id: string; secret: string } & Body;
  }
  async function place(tenant: string): Promise<string> {
    const res = await request(url('/v1/orders'), {
      method: 'POST',
      headers: as(tenant),
      json: sampleOrder(),
    });
    expect(res.status).toBe(202);
    return res.body.orderId as string;
  }
  async function deliveries(tenant: string, id: string) {
    const res = await request(url(`/v1/webhooks/${id}/deliveries`), { headers: as(tenant) });
    expect(res.status).toBe(200);
    return res.body.deliveries as Body[];
  }
  async function receiver(...args: Parameters<typeof startReceiver>) {
    const r = await startReceiver(...args);
    receivers.push(r);
    return r;
  }

  beforeAll(async () => {
    const config: Config = testConfig({
      EVENT_BUS: 'bullmq',
      TENANTS: 'dev:sub_tenants=on',
      WEBHOOKS_ATTEMPTS: '4',
      WEBHOOKS_BACKOFF_MS: '100',
      WEBHOOKS_BACKOFF_MAX_MS: '300',
      WEBHOOKS_TIMEOUT_MS: '3000',
    });
    platform = await startPlatform(config, { workers: ['orders', 'outbox', 'projections', 'webhooks'] });
  });
  afterAll(async () => {
    await Promise.all(receivers.map((r) => r.close()));
    await platform?.close();
  });

  it('signs per Standard Webhooks (verified independently), shows the secret once, and signs with both secrets after a rotation', async () => {
    const hooks = await receiver();
    const endpoint = await register('signed', hooks.url);
    expect(endpoint.secret).toMatch(/^whsec_[A-Za-z0-9+/]+=*$/);
    const listed = await request(url('/v1/webhooks'), { headers: as('signed') });
    expect(listed.body.webhooks).toEqual([expect.objectContaining({ id: endpoint.id, enabled: true })]);
    expect(JSON.stringify(listed.body)).not.toContain('whsec_');
    // At rest the secret is encrypted (AES-256-GCM): neither it nor its key bytes are in the row.
    const { rows } = await platform.rt.pool.query<{ secret: string }>(
      'SELECT secret FROM webhook_endpoints WHERE endpoint_id = $1',
      [endpoint.id],
    );
    expect(rows[0]!.secret).toMatch(/^v1\./);
    expect(rows[0]!.secret).not.toContain(endpoint.secret.slice('whsec_'.length, 20));
    // Another tenant sees none of it.
    expect((await request(url('/v1/webhooks'), { headers: as('other') })).body.webhooks).toEqual([]);
    expect((await request(url(`/v1/webhooks/${endpoint.id}`), { headers: as('other') })).status).toBe(404);

    const orderId = await place('signed');
    const got = await eventually(() => hooks.received[0], { what: 'the first delivery' });
    const verified = new Webhook(endpoint.secret).verify(got.body, got.headers) as Body;
    expect(verified).toMatchObject({ type: 'order.placed', data: { orderId, tenant: 'dev/signed' } });
    expect(typeof verified.timestamp).toBe('string');
    expect(got.headers['webhook-id']).toMatch(/^msg_[0-9a-f]{32}$/);
    expect(() =>
      new Webhook(`whsec_${Buffer.alloc(24, 7).toString('base64')}`).verify(got.body, got.headers),
    ).toThrow();
    await eventually(async () => (await deliveries('signed', endpoint.id))[0]?.status === 'delivered', {
      what: 'the delivery to be recorded',
    });
    expect((await deliveries('signed', endpoint.id))[0]).toMatchObject({
      id: got.headers['webhook-id'],
      eventType: 'order.placed',
      attempts: 1,
      responseStatus: 200,
      lastError: null,
    });

    const rotated = await request(url(`/v1/webhooks/${endpoint.id}/rotate-secret`), {
      method: 'POST',
      headers: as('signed'),
    });
    expect(rotated.status).toBe(200);
    const secret2 = rotated.body.secret as string;
    expect(secret2).not.toBe(endpoint.secret);
    expect(rotated.body.previousSecretExpiresAt).toEqual(expect.any(String));
    await place('signed');
    const second = await eventually(() => hooks.received[1], { what: 'the delivery after the rotation' });
    expect(second.headers['webhook-signature']!.split(' ')).toHaveLength(2);
    // Receivers that still hold the old secret and those that have the new one both verify it.
    expect(() => new Webhook(secret2).verify(second.body, second.headers)).not.toThrow();
    expect(() => new Webhook(endpoint.secret).verify(second.body, second.headers)).not.toThrow();
  });

  it('retries a failing receiver with the same webhook-id, and stops once it answered 2xx', async () => {
    const hooks = await receiver((n) => (n <= 2 ? 500 : 204));
    const endpoint = await register('flaky', hooks.url);
    await place('flaky');
    const row = await eventually(
      async () => {
        const [d] = await deliveries('flaky', endpoint.id);
        return d?.status === 'delivered' ? d : undefined;
      },
      { what: 'the delivery to succeed on its third attempt' },
    );
    expect(row).toMatchObject({ attempts: 3, responseStatus: 204, lastError: null });
    expect(hooks.received.map((r) => r.status)).toEqual([500, 500, 204]);
    expect(new Set(hooks.received.map((r) => r.headers['webhook-id']))).toEqual(new Set([row.id]));
    // Each attempt is signed afresh (its own timestamp) and verifies.
    for (const r of hooks.received)
      expect(() => new Webhook(endpoint.secret).verify(r.body, r.headers)).not.toThrow();
    // The job is finished for good: delivered once, nothing left to retry.
    const job = await platform.rt.redis.exists(
      `${platform.config.redis.queuePrefix}:webhooks:${row.id as string}`,
    );
    expect(job).toBe(1);
    const state = await eventually(
      async () => {
        const { Queue } = await import('bullmq');
        const q = new Queue('webhooks', {
          connection: platform.rt.redis,
          prefix: platform.config.redis.queuePrefix,
        });
        try {
          return (await q.getJobState(row.id as string)) === 'completed' ? 'completed' : undefined;
        } finally {
          await q.close();
        }
      },
      { what: 'the delivery job to complete' },
    );
    expect(state).toBe('completed');
    expect(hooks.received.filter((r) => r.status === 204)).toHaveLength(1);
  });

  it('dead-letters a delivery whose receiver stays down; a redrive delivers it with the same webhook-id', async () => {
    const hooks = await receiver(() => 503);
    const endpoint = await register('down', hooks.url);
    await place('down');
    const dead = await eventually(
      async () => {
        const [d] = await deliveries('down', endpoint.id);
        return d?.status === 'dead_lettered' ? d : undefined;
      },
      { what: 'the delivery to be dead-lettered after its 4 attempts' },
    );
    expect(dead).toMatchObject({ attempts: 4, responseStatus: 503, lastError: 'endpoint answered 503' });
    expect(hooks.received).toHaveLength(4);
    // A command dead letter like any module's: listed for operators under its origin queue.
    const letters = await request(url('/v1/dead-letters?status=pending'));
    expect(letters.status).toBe(200);
    const letter = (letters.body.deadLetters as Body[]).find((d) => d.id === dead.deadLetterId);
    expect(letter).toMatchObject({ origin: 'webhooks' });

    hooks.behave(() => 200);
    const redriven = await request(url(`/v1/dead-letters/${dead.deadLetterId as string}/redrive`), {
      method: 'POST',
    });
    expect(redriven.status, JSON.stringify(redriven.body)).toBeLessThan(300);
    await eventually(async () => (await deliveries('down', endpoint.id))[0]?.status === 'delivered', {
      what: 'the redriven delivery to succeed',
    });
    expect(hooks.received).toHaveLength(5);
    expect(hooks.received[4]!.status).toBe(200);
    expect(hooks.received[4]!.headers['webhook-id']).toBe(dead.id);
    expect(() =>
      new Webhook(endpoint.secret).verify(hooks.received[4]!.body, hooks.received[4]!.headers),
    ).not.toThrow();
  });

  it('fans an event out once per endpoint however often the bus delivers it', async () => {
    const hooks = await receiver();
    const endpoint = await register('dup', hooks.url, ['order.*']);
    const queue = createCommandQueue(platform.rt.redis, platform.config.redis.queuePrefix, 'webhooks');
    try {
      const fanOut = createFanOut({
        pool: platform.rt.pool,
        logger: platform.rt.logger,
        queue,
        jobName: webhooksModule.jobName,
        jobOptions: { attempts: 2 },
        endpointMaxInFlight: 2,
      });
      const event = {
        eventId: randomUUID(),
        type: 'order.rejected',
        version: 1,
        key: randomUUID(),
        correlationId: 'c-dup',
        occurredAt: new Date().toISOString(),
        payload: { orderId: randomUUID(), tenant: 'dev/dup' },
      };
      // At least once: the same event twice (and concurrently), as a bus may redeliver it.
      await Promise.all([fanOut(event, delivery), fanOut(event, delivery)]);
      await fanOut(event, delivery);
      // Not this tenant's, or not a type it asked for: nothing.
      await fanOut({ ...event, eventId: randomUUID(), payload: { tenant: 'dev/else' } }, delivery);
      await fanOut({ ...event, eventId: randomUUID(), type: 'refund.completed' }, delivery);
      await eventually(async () => (await deliveries('dup', endpoint.id))[0]?.status === 'delivered', {
        what: 'the delivery',
      });
      await fanOut(event, delivery); // after it was delivered: still nothing more
      expect(await deliveries('dup', endpoint.id)).toHaveLength(1);
      expect(hooks.received).toHaveLength(1);
      expect(JSON.parse(hooks.received[0]!.body)).toMatchObject({
        type: 'order.rejected',
        data: event.payload,
      });
    } finally {
      await queue.close();
    }
  });

  it('disables, enables and deletes an endpoint', async () => {
    const hooks = await receiver();
    const endpoint = await register('crud', hooks.url);
    const off = await request(url(`/v1/webhooks/${endpoint.id}/disable`), {
      method: 'POST',
      headers: as('crud'),
    });
    expect(off.body).toMatchObject({ enabled: false });
    const on = await request(url(`/v1/webhooks/${endpoint.id}/enable`), {
      method: 'POST',
      headers: as('crud'),
    });
    expect(on.body).toMatchObject({ enabled: true });
    expect(
      (await request(url(`/v1/webhooks/${endpoint.id}`), { method: 'DELETE', headers: as('other') })).status,
    ).toBe(404);
    expect(
      (await request(url(`/v1/webhooks/${endpoint.id}`), { method: 'DELETE', headers: as('crud') })).status,
    ).toBe(204);
    expect((await request(url('/v1/webhooks'), { headers: as('crud') })).body.webhooks).toEqual([]);
    const unknown = await request(url('/v1/webhooks'), {
      method: 'POST',
      headers: as('crud'),
      json: { url: hooks.url, eventTypes: ['order.teleported'] },
    });
    expect(unknown.status).toBe(422);
    expect(unknown.body).toMatchObject({ code: 'webhook.event_type_unknown' });
    const accepted = await request(url('/v1/webhooks'), {
      method: 'POST',
      headers: as('crud'),
      json: { url: hooks.url, eventTypes: ['refund.*', 'batch.completed', 'order.dead_lettered'] },
    });
    expect(accepted.status).toBe(201);
  });
});
