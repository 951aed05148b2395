import { randomUUID } from 'node:crypto';
import { Queue } from 'bullmq';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RefundJob } from '../../modules/refunds/domain.ts';
import { refundsModule } from '../../modules/refunds/module.ts';
import { decideAndWriteRefund } from '../../modules/refunds/worker/refunds.sql.ts';
import { withTransaction } from '../../shared/db/pool.ts';
import type { EventEnvelope } from '../../shared/domain/events.ts';
import type { JobProgress } from '../../shared/queue/job-delivery.ts';
import { applyEvents, loadEventCatalog } from '../../workers/projections/projector.ts';
import { rebuildReadModels } from '../../workers/projections/rebuild.ts';
import { eventually, testConfig, testLogger } from '../support/env.ts';
import { request, sampleOrder } from '../support/http.ts';
import { startPlatform, type Platform } from '../support/platform.ts';

// The refunds module end to end (API → queue `refunds` → write model → outbox → bus → read models) on
// every bus, with the whole platform in this process: the second module proves the core is generic.
const buses = (process.env.REFUND_BUSES ?? 'bullmq,kafka,rabbitmq,sqs').split(',').filter(Boolean);

type Body = Record<string, unknown>;

function client(platform: () => Platform) {
  const url = (path: string) => `${platform().url}${path}`;
  return {
    url,
    async place(over: Body = {}): Promise<string> {
      const res = await request(url('/v1/orders'), { method: 'POST', json: sampleOrder(over) });
      expect(res.status).toBe(202);
      return res.body.orderId as string;
    },
    /** Polls until the read model shows `path` in `status` (updatedAt set: projected, not the write-model fallback). */
    projected(path: string, status: string): Promise<Body> {
      return eventually(
        async () => {
          const res = await request(url(path));
          return res.status === 200 && res.body.status === status && res.body.updatedAt !== null
            ? res.body
            : undefined;
        },
        { what: `${path} to be ${status} in the read model` },
      );
    },
    refund(orderId: string, json: Body, headers: Record<string, string> = {}) {
      return request(url(`/v1/orders/${orderId}/refunds`), { method: 'POST', json, headers });
    },
  };
}

describe.each(buses)('refunds (EVENT_BUS=%s)', (bus) => {
  let platform: Platform;
  const api = client(() => platform);

  beforeAll(async () => {
    platform = await startPlatform(testConfig({ EVENT_BUS: bus }));
  });
  afterAll(async () => {
    await platform?.close();
  });

  it('refunds a completed order and shows it on the refund, the order and the stats', async () => {
    const customerId = `c-refund-${bus}`;
    const orderId = await api.place({ customerId }); // 2 × 1250 = 2500 EUR cents
    await api.projected(`/v1/orders/${orderId}`, 'completed');

    const res = await api.refund(
      orderId,
      { amountCents: 1000, reason: 'damaged' },
      { 'idempotency-key': `k-${bus}` },
    );
    expect(res.status).toBe(202);
    expect(res.body).toMatchObject({ orderId, status: 'queued' });
    const refundId = res.body.refundId as string;
    expect(res.headers.get('location')).toBe(`/v1/refunds/${refundId}`);
    // The same Idempotency-Key replays the first answer: one refund, not two.
    const again = await api.refund(
      orderId,
      { amountCents: 1000, reason: 'damaged' },
      { 'idempotency-key': `k-${bus}` },
    );
    expect(again.body.refundId).toBe(refundId);
    expect(again.headers.get('idempotent-replayed')).toBe('true');

    const refund = await api.projected(`/v1/refunds/${refundId}`, 'completed');
    expect(refund).toMatchObject({
      orderId,
      customerId,
      currency: 'EUR',
      amountCents: 1000,
      reason: 'damaged',
    });
    const order = await eventually(
      async () => {
        const o = (await request(api.url(`/v1/orders/${orderId}`))).body;
        return o.refundedCents === 1000 ? o : undefined;
      },
      { what: 'the order to show its refund' },
    );
    expect(order.refunds).toEqual([
      expect.objectContaining({ refundId, amountCents: 1000, status: 'completed' }),
    ]);
    expect((await request(api.url(`/v1/orders/${orderId}/refunds`))).body.refunds).toHaveLength(1);
    const totals = (await request(api.url(`/v1/customers/${customerId}/orders`))).body.totals;
    expect(totals).toEqual([
      expect.objectContaining({
        currency: 'EUR',
        revenueCents: 2500,
        refundedCents: 1000,
        netRevenueCents: 1500,
      }),
    ]);
    const stats = (await request(api.url('/v1/stats'))).body as { totals: Body[] };
    expect(stats.totals).toEqual([
      expect.objectContaining({ currency: 'EUR', refundedCents: 1000, netRevenueCents: 1500 }),
    ]);
  });

  it('rejects, once and for good, a refund past what is left of the order', async () => {
    const orderId = await api.place();
    await api.projected(`/v1/orders/${orderId}`, 'completed');
    const first = await api.refund(orderId, { amountCents: 2000 });
    await api.projected(`/v1/refunds/${first.body.refundId as string}`, 'completed');
    const over = await api.refund(orderId, { amountCents: 501 });
    const rejected = await api.projected(`/v1/refunds/${over.body.refundId as string}`, 'rejected');
    expect(rejected).toMatchObject({ code: 'refund.exceeds_order_total', attempts: 1 });
    const wrongCurrency = await api.refund(orderId, { amountCents: 1, currency: 'USD' });
    expect(
      await api.projected(`/v1/refunds/${wrongCurrency.body.refundId as string}`, 'rejected'),
    ).toMatchObject({
      code: 'refund.currency_mismatch',
    });
  });
});

describe('refunds (bus-independent rules)', () => {
  let platform: Platform;
  const api = client(() => platform);

  beforeAll(async () => {
    platform = await startPlatform(testConfig());
  });
  afterAll(async () => {
    await platform?.close();
  });

  it('never lets concurrent refunds of one order exceed its total', async () => {
    const orderId = await api.place(); // 2500
    await api.projected(`/v1/orders/${orderId}`, 'completed');
    const answers = await Promise.all(
      Array.from({ length: 8 }, () => api.refund(orderId, { amountCents: 800 })),
    );
    expect(answers.every((a) => a.status === 202)).toBe(true);
    const decided = await Promise.all(
      answers.map((a) =>
        eventually(
          async () => {
            const r = (await request(api.url(`/v1/refunds/${a.body.refundId as string}`))).body;
            return r.status === 'completed' || r.status === 'rejected' ? r : undefined;
          },
          { what: 'each refund to be decided' },
        ),
      ),
    );
    // 3 × 800 = 2400 ≤ 2500; a fourth would overdraw whatever the interleaving.
    expect(decided.filter((r) => r.status === 'completed')).toHaveLength(3);
    expect(new Set(decided.filter((r) => r.status === 'rejected').map((r) => r.code))).toEqual(
      new Set(['refund.exceeds_order_total']),
    );
    const { rows } = await platform.rt.pool.query<{ sum: number }>(
      `SELECT sum(amount_cents)::bigint AS sum FROM refunds WHERE order_id = $1 AND status = 'completed'`,
      [orderId],
    );
    expect(rows[0]!.sum).toBe(2400);
  });

  it('decides a refund once: a redelivered command changes nothing and emits nothing', async () => {
    const orderId = await api.place();
    await api.projected(`/v1/orders/${orderId}`, 'completed');
    const job = {
      refundId: randomUUID(),
      orderId,
      correlationId: 'corr-redelivered-1',
      requestedAt: new Date().toISOString(),
      refund: { amountCents: 700 },
    };
    const first = await decideAndWriteRefund(platform.rt.pool, job, 1, new Date());
    const again = await Promise.all([
      decideAndWriteRefund(platform.rt.pool, job, 2, new Date()),
      decideAndWriteRefund(platform.rt.pool, job, 2, new Date()),
    ]);
    expect(first.status).toBe('completed');
    expect(again.map((o) => o.status)).toEqual(['duplicate', 'duplicate']);
    const events = await platform.rt.pool.query(
      `SELECT count(*)::int AS n FROM outbox WHERE envelope->'payload'->>'refundId' = $1`,
      [job.refundId],
    );
    expect(events.rows[0]).toEqual({ n: 1 });
  });

  it('projects refunds whatever order their events arrive in, and never twice', async () => {
    const catalog = await loadEventCatalog();
    const orderId = randomUUID();
    const refundId = randomUUID();
    const at = '2026-05-01T10:00:00.000Z';
    const base = { version: 1, key: orderId, correlationId: 'corr-order-insensitive', occurredAt: at };
    const dead: EventEnvelope = {
      ...base,
      eventId: randomUUID(),
      type: 'refund.dead_lettered',
      payload: {
        refundId,
        orderId,
        amountCents: 300,
        reason: null,
        attempts: 5,
        requestedAt: at,
        error: 'boom',
        deadLetterId: 'dl-x',
        deadLetteredAt: at,
      },
    };
    const completed: EventEnvelope = {
      ...base,
      eventId: randomUUID(),
      type: 'refund.completed',
      payload: {
        refundId,
        orderId,
        amountCents: 300,
        reason: null,
        attempts: 1,
        requestedAt: at,
        customerId: 'c-insensitive',
        currency: 'EUR',
        completedAt: at,
      },
    };
    const view = async (consumer: string, events: EventEnvelope[]) => {
      for (const e of events) {
        await withTransaction(platform.rt.pool, (c) => applyEvents(c, consumer, [e], catalog));
      }
      const { rows } = await platform.rt.pool.query(
        `SELECT status, amount_cents FROM refund_view WHERE refund_id = $1`,
        [refundId],
      );
      const stats = await platform.rt.pool.query(
        `SELECT refund_count, refunded_cents FROM refund_stats WHERE dimension = 'customer' AND key = 'c-insensitive'`,
      );
      await platform.rt.pool.query('DELETE FROM refund_view WHERE refund_id = $1', [refundId]);
      await platform.rt.pool.query(`DELETE FROM refund_stats_shards WHERE key = 'c-insensitive'`);
      return { view: rows, stats: stats.rows };
    };
    const inOrder = await view('order-a', [dead, completed, completed]);
    const reversed = await view('order-b', [completed, dead, completed]);
    expect(inOrder).toEqual({
      view: [{ status: 'completed', amount_cents: 300 }],
      stats: [{ refund_count: 1, refunded_cents: 300 }],
    });
    expect(reversed).toEqual(inOrder);
  });

  it('documents refunds in the OpenAPI document, and what they add to orders and stats', async () => {
    const doc = (await request(api.url('/openapi.json'))).body as {
      paths: Record<string, Record<string, unknown>>;
      components: { schemas: Record<string, { properties?: Record<string, unknown> }> };
    };
    expect(Object.keys(doc.paths['/v1/orders/{orderId}/refunds'] ?? {}).sort()).toEqual(['get', 'post']);
    expect(Object.keys(doc.paths['/v1/refunds/{refundId}'] ?? {})).toEqual(['get']);
    expect(Object.keys(doc.components.schemas['Order']?.properties ?? {})).toEqual(
      expect.arrayContaining(['refundedCents', 'refunds']),
    );
    expect(JSON.stringify(doc.components.schemas['Stats'])).toContain('netRevenueCents');
    // No named schema is built on a reference to itself (an extended schema registered under its base's name).
    for (const [name, schema] of Object.entries(doc.components.schemas)) {
      expect(JSON.stringify(schema), name).not.toContain(`"#/components/schemas/${name}"`);
    }
  });

  it('answers 404 for an unknown order and 409 for one that cannot be refunded', async () => {
    const unknown = await api.refund(randomUUID(), { amountCents: 1 });
    expect(unknown.status).toBe(404);
    const rejectedOrder = await api.place({ currency: 'XXX' });
    await api.projected(`/v1/orders/${rejectedOrder}`, 'rejected');
    const conflict = await api.refund(rejectedOrder, { amountCents: 1 });
    expect(conflict.status).toBe(409);
    expect(conflict.body).toMatchObject({ code: 'order.not_refundable' });
    expect((await api.refund(rejectedOrder, { amountCents: 0 })).status).toBe(400);
    expect((await request(api.url(`/v1/refunds/${randomUUID()}`))).status).toBe(404);
  });

  it('answers a queued refund with the attempts the delivery core counted, not BullMQ', async () => {
    const refunds = new Queue<RefundJob>(refundsModule.name, {
      connection: platform.rt.redis,
      prefix: platform.config.redis.queuePrefix,
    });
    const data: RefundJob = {
      refundId: randomUUID(),
      orderId: randomUUID(),
      correlationId: `queued-refund-${Date.now().toString(36)}`,
      requestedAt: new Date().toISOString(),
      refund: { amountCents: 300, reason: 'late' },
    };
    // Delayed as a hand-back leaves it: one attempt failed, its count in its progress alone.
    const job = await refunds.add(refundsModule.jobName, data, { jobId: data.refundId, delay: 60_000 });
    try {
      await job.updateProgress({ attempt: 2, snoozes: 0 } satisfies JobProgress);
      const res = await request(api.url(`/v1/refunds/${data.refundId}`));
      expect(res.status).toBe(200);
      expect(res.body).toMatchObject({ refundId: data.refundId, status: 'queued', attempts: 1 });
    } finally {
      await job.remove();
      await refunds.close();
    }
  });

  it('dead-letters a malformed refund command in its own queue, and rebuilds refund read models', async () => {
    const refunds = new Queue(refundsModule.name, {
      connection: platform.rt.redis,
      prefix: platform.config.redis.queuePrefix,
    });
    await refunds.add(
      refundsModule.jobName,
      { refundId: randomUUID(), nonsense: true },
      { jobId: 'bad-refund' },
    );
    await refunds.close();
    const dead = await eventually(
      async () =>
        (
          await platform.rt.pool.query<{ origin: string; error: string }>(
            `SELECT origin, error FROM dead_letters WHERE id = 'bullmq-refunds-bad-refund'`,
          )
        ).rows[0],
      { what: 'the malformed refund in the dead letters' },
    );
    expect(dead).toMatchObject({
      origin: 'refunds',
      error: expect.stringMatching(/invalid command for queue refunds/),
    });

    // Its dead-letter event projected too — every event in the outbox is, before the rebuild is compared with
    // the live read models. (A probe must answer false, not 0, to be polled again: `eventually` stops on 0.)
    await eventually(
      async () =>
        (await platform.rt.pool.query(`SELECT 1 FROM refund_view WHERE status = 'dead_lettered'`)).rowCount! >
          0 &&
        (
          await platform.rt.pool.query<{ n: number }>(
            `SELECT count(*)::int AS n FROM outbox x WHERE NOT EXISTS
               (SELECT 1 FROM projection_inbox i WHERE i.consumer = 'projections' AND i.event_id = x.event_id)`,
          )
        ).rows[0]!.n === 0,
      { what: 'every event, the dead-lettered refund included, in the read models' },
    );
    const snapshot = () =>
      platform.rt.pool
        .query('SELECT refund_id, status, amount_cents FROM refund_view ORDER BY refund_id')
        .then((r) => r.rows);
    const before = await snapshot();
    expect(before.length).toBeGreaterThan(0);
    await rebuildReadModels({ pool: platform.rt.pool, logger: testLogger() });
    expect(await snapshot()).toEqual(before);
  });
});
