import { Queue } from 'bullmq';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { OrdersQueues, PLACE_ORDER_JOB } from '../../../modules/orders/queue.ts';
import { loadConfig } from '../../../shared/config/config.ts';
import { generateApiKey } from '../../../shared/security/api-keys.ts';
import { eventually, isolatedEnv } from '../../support/env.ts';
import { startFakePayment, type FakePayment } from '../../support/fake-payment.ts';
import { request, sampleOrder } from '../../support/http.ts';
import { startPlatform, type Platform } from '../../support/platform.ts';
import { MODULES } from '../../../modules/registry.ts';

// Issue #22, batches: POST /v1/orders/batch answers a batch id; GET /v1/batches/{id} counts its
// accepted orders as the real workers decide them (completed, rejected by a declined payment,
// dead-lettered as poison); `batch.completed` is appended to the outbox once, goes through the bus to
// the projector (which must not take it for poison), and is not repeated by a redelivered decision.
// The batch is its producer's: another tenant's key gets 404.

const producer = generateApiKey('shop', ['orders:write', 'orders:read']);
const rival = generateApiKey('rival', ['orders:write', 'orders:read']);
const admin = generateApiKey('ops', ['admin']);
const bearer = (k: { key: string }) => ({ authorization: `Bearer ${k.key}` });

interface BatchAnswer {
  batchId?: string;
  orders: ({ orderId: string; status: string } | { error: { status: number } })[];
}
interface Progress {
  id: string;
  module: string;
  total: number;
  accepted: number;
  completed: number;
  rejected: number;
  deadLettered: number;
  pending: number;
  createdAt: string;
  completedAt: string | null;
}

describe('batches', () => {
  let fake: FakePayment;
  let api: Platform;
  let workers: Platform | undefined;
  let queue: Queue;
  let env: Record<string, string>;

  beforeAll(async () => {
    fake = await startFakePayment({ mode: 'approve', declineCustomerIds: ['c-decline'] });
    env = isolatedEnv({
      API_KEYS: [producer.entry, rival.entry, admin.entry].join(','),
      PAYMENT_URL: fake.url,
    });
    // The API first, alone: the batch's jobs wait until the test has made one of them poison.
    api = await startPlatform(loadConfig(env, { modules: MODULES }), { workers: [] });
    queue = new Queue(OrdersQueues.commands, { connection: api.rt.redis, prefix: env.QUEUE_PREFIX });
  });
  afterAll(async () => {
    await queue?.close();
    await workers?.close({ keep: true });
    await api?.close();
    await fake?.close();
  });

  const progress = (id: string, key: { key: string } = producer) =>
    request<Progress>(`${api.url}/v1/batches/${id}`, { headers: bearer(key) });

  it('counts a mixed batch as the workers decide it and emits batch.completed once', async () => {
    const posted = await request<BatchAnswer>(`${api.url}/v1/orders/batch`, {
      method: 'POST',
      headers: bearer(producer),
      json: {
        orders: [
          sampleOrder({ customerId: 'c-ok-1' }),
          sampleOrder({ customerId: 'c-ok-2' }),
          sampleOrder({ customerId: 'c-decline' }),
          sampleOrder({ customerId: 'c-poison' }),
          { customerId: 'c-invalid' }, // refused at the API: not part of the batch
        ],
      },
    });
    expect(posted.status).toBe(202);
    const batchId = posted.body.batchId!;
    expect(batchId).toMatch(/^[0-9a-f-]{36}$/);
    expect(posted.headers.get('location')).toBe(`/v1/batches/${batchId}`);
    expect(posted.body.orders).toHaveLength(5);
    expect('error' in posted.body.orders[4]! && posted.body.orders[4].error.status).toBe(400);
    const ids = posted.body.orders.flatMap((o) => ('orderId' in o ? [o.orderId] : []));
    expect(ids).toHaveLength(4);

    const before = await progress(batchId);
    expect(before.status).toBe(200);
    expect(before.body).toMatchObject({
      id: batchId,
      module: 'orders',
      total: 4,
      accepted: 4,
      completed: 0,
      rejected: 0,
      deadLettered: 0,
      pending: 4,
      completedAt: null,
    });

    // The fourth order becomes poison in Redis (a field its schema does not allow): dead-lettered at once.
    const poison = await queue.getJob(ids[3]!);
    await poison!.updateData({ ...(poison!.data as Record<string, unknown>), smuggled: true });

    workers = await startPlatform(loadConfig(env, { modules: MODULES }), { api: false });
    const done = await eventually(
      async () => {
        const p = await progress(batchId);
        return p.body.completedAt !== null ? p.body : undefined;
      },
      { what: 'batch completed', timeoutMs: 20_000 },
    );
    expect(done).toMatchObject({
      total: 4,
      accepted: 4,
      completed: 2,
      rejected: 1,
      deadLettered: 1,
      pending: 0,
    });

    const pool = api.rt.pool;
    const completions = async () =>
      (
        await pool.query<{ event_id: string; envelope: { payload: Record<string, unknown> } }>(
          `SELECT event_id::text, envelope FROM outbox WHERE event_type = 'batch.completed' AND aggregate_id = $1`,
          [batchId],
        )
      ).rows;
    const [event, ...more] = await completions();
    expect(more).toHaveLength(0);
    expect(event!.envelope.payload).toMatchObject({
      batchId,
      module: 'orders',
      tenant: 'shop',
      acceptedBy: 'shop',
      total: 4,
      completed: 2,
      rejected: 1,
      deadLettered: 1,
    });
    // Through the bus to the projector: applied (its inbox holds it), not dead-lettered as poison.
    await eventually(
      async () =>
        (await pool.query('SELECT 1 FROM projection_inbox WHERE event_id = $1', [event!.event_id]))
          .rowCount === 1,
      { what: 'batch.completed projected' },
    );
    const poisoned = await pool.query(
      `SELECT error FROM dead_letters WHERE kind = 'event' AND error LIKE '%batch.completed%'`,
    );
    expect(poisoned.rows).toEqual([]);

    // A decided order redelivered (its job again, under another job id) changes nothing.
    const first = (
      await pool.query<{ status: string }>('SELECT status FROM orders WHERE order_id = $1', [ids[0]])
    ).rows[0];
    expect(first?.status).toBe('completed');
    const original = await request<{ status: string }>(`${api.url}/v1/orders/${ids[0]}`, {
      headers: bearer(producer),
    });
    expect(original.status).toBe(200);
    const again = await queue.add(PLACE_ORDER_JOB, await jobDataOf(pool, ids[0]!, batchId), {
      jobId: `${ids[0]}-again`,
    });
    await eventually(
      async () => (await again.isCompleted()) || (await queue.getJob(again.id!)) === undefined,
      {
        what: 'redelivered job processed',
      },
    );
    expect((await progress(batchId)).body).toMatchObject({ completed: 2, rejected: 1, deadLettered: 1 });
    expect(await completions()).toHaveLength(1);
  });

  it('maps an idempotent retry to the same batch and shows it only to its producer (and admin)', async () => {
    const post = () =>
      request<BatchAnswer>(`${api.url}/v1/orders/batch`, {
        method: 'POST',
        headers: { ...bearer(producer), 'idempotency-key': 'batch-retry-1' },
        json: { orders: [sampleOrder({ customerId: 'c-retry' })] },
      });
    const one = await post();
    const two = await post();
    expect(one.status).toBe(202);
    expect(two.status).toBe(202);
    expect(one.body.batchId).toBeDefined();
    expect(two.body.batchId).toBe(one.body.batchId);
    expect(two.headers.get('location')).toBe(`/v1/batches/${one.body.batchId}`);
    const id = one.body.batchId!;

    expect((await progress(id)).status).toBe(200);
    expect((await progress(id, admin)).status).toBe(200);
    const foreign = await progress(id, rival);
    expect(foreign.status).toBe(404);
    expect(foreign.headers.get('content-type')).toMatch(/application\/problem\+json/);
    expect((await progress('00000000-0000-4000-8000-000000000000')).status).toBe(404);
  });
});

/** What the API enqueued for an order, rebuilt from the write model (the job itself may be gone). */
async function jobDataOf(
  pool: Platform['rt']['pool'],
  orderId: string,
  batchId: string,
): Promise<Record<string, unknown>> {
  const row = (
    await pool.query<{
      customer_id: string;
      currency: string;
      items: unknown;
      correlation_id: string;
      accepted_at: Date;
      accepted_by: string;
      tenant: string;
    }>('SELECT * FROM orders WHERE order_id = $1', [orderId])
  ).rows[0]!;
  return {
    orderId,
    correlationId: row.correlation_id,
    acceptedAt: row.accepted_at.toISOString(),
    acceptedBy: row.accepted_by,
    tenant: row.tenant,
    batchId,
    order: { customerId: row.customer_id, currency: row.currency, items: row.items },
  };
}
