import { Queue } from 'bullmq';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createRedriveOutcomes } from '../../../dashboard/dead-letters/outcome.ts';
import { createJobLookup } from '../../../dashboard/jobs.ts';
import { createOrderStories } from '../../../dashboard/orders/story.ts';
import { orderStoryView } from '../../../dashboard/views/orders.ts';
import { OrderJobSchema } from '../../../modules/orders/domain.ts';
import { OrderDeadLetteredPayload, OrderPlacedPayload } from '../../../modules/orders/events.ts';
import { OrdersQueues } from '../../../modules/orders/queue.ts';
import { RefundJobSchema } from '../../../modules/refunds/domain.ts';
import { RefundCompletedPayload } from '../../../modules/refunds/events.ts';
import { loadConfig } from '../../../shared/config/config.ts';
import { allQueueNames, queueOptions } from '../../../shared/queue/names.ts';
import { generateApiKey } from '../../../shared/security/api-keys.ts';
import { eventually, isolatedEnv } from '../../support/env.ts';
import { request, sampleOrder } from '../../support/http.ts';
import { startPlatform, type Platform } from '../../support/platform.ts';
import { MODULES } from '../../../modules/registry.ts';

// A command's tenant travels with it from the API to everything that tells its story: the job, the
// write model, its events, the read model (GET) and the console's order story. Real API, workers,
// Redis and PostgreSQL in this process. Key `shop` may name sub-tenants (`Conveyor-Tenant: acme` →
// tenant `shop/acme`); without the header a command is its key's.
const shop = generateApiKey('shop', ['orders:write', 'orders:read']);
const as = (tenant?: string): Record<string, string> => ({
  authorization: `Bearer ${shop.key}`,
  ...(tenant === undefined ? {} : { 'conveyor-tenant': tenant }),
});

type Body = Record<string, unknown>;

/** The console's story of an order, as its page shows it: the story and the page's HTML. */
async function storyOf(platform: Platform, orderId: string) {
  const { pool, redis, config } = platform.rt;
  const queues = allQueueNames(MODULES).map(
    (n) => new Queue(n, queueOptions(redis, config.redis.queuePrefix, n)),
  );
  try {
    const jobs = createJobLookup(queues);
    const story = await createOrderStories(
      { pool, jobs, outcomes: createRedriveOutcomes({ pool, jobs }) },
      '/dashboard',
    ).get(orderId);
    return { story, page: String(await orderStoryView(story)) };
  } finally {
    await Promise.all(queues.map((q) => q.close()));
  }
}

describe('the tenant travels with every command (API, workers and read models)', () => {
  let platform: Platform;
  const url = (path: string) => `${platform.url}${path}`;
  const query = async <T extends Body>(sql: string, params: unknown[]) =>
    (await platform.rt.pool.query<T>(sql, params)).rows;

  async function place(headers: Record<string, string>, over: Body = {}): Promise<string> {
    const res = await request(url('/v1/orders'), { method: 'POST', json: sampleOrder(over), headers });
    expect(res.status, JSON.stringify(res.body)).toBe(202);
    return res.body.orderId as string;
  }
  /** The order as GET answers it once the read model has it. */
  function projected(orderId: string, status = 'completed'): Promise<Body> {
    return eventually(
      async () => {
        const res = await request(url(`/v1/orders/${orderId}`), { headers: as() });
        return res.body.status === status && res.body.updatedAt !== null ? res.body : undefined;
      },
      { what: `order ${orderId} ${status} in the read model` },
    );
  }
  /** The tenant each event of `aggregateId` of `type` carries in its payload (null: none). */
  const eventTenants = async (aggregateId: string, type: string) =>
    (
      await query<{ tenant: string | null }>(
        `SELECT envelope->'payload'->>'tenant' AS tenant FROM outbox
          WHERE aggregate_id = $1 AND event_type = $2 ORDER BY id`,
        [aggregateId, type],
      )
    ).map((r) => r.tenant);

  beforeAll(async () => {
    platform = await startPlatform(
      loadConfig(
        isolatedEnv({
          API_KEYS: shop.entry,
          TENANTS: 'shop:sub_tenants=on',
          ORDERS_ATTEMPTS: '2',
          ORDERS_BACKOFF_MS: '20',
        }),
        { modules: MODULES },
      ),
    );
  });
  afterAll(async () => {
    await platform?.close();
  });

  it('an order for a sub-tenant is its in the write model, its order.placed event, GET and the story', async () => {
    const orderId = await place(as('acme'));
    const order = await projected(orderId);
    expect(order.tenant).toBe('shop/acme');

    const [row] = await query<{ tenant: string; accepted_by: string }>(
      'SELECT tenant, accepted_by FROM orders WHERE order_id = $1',
      [orderId],
    );
    expect(row).toEqual({ tenant: 'shop/acme', accepted_by: 'shop' });
    expect(await eventTenants(orderId, 'order.placed')).toEqual(['shop/acme']);

    const { story, page } = await storyOf(platform, orderId);
    expect(story).toMatchObject({ acceptedBy: 'shop', tenant: 'shop/acme' });
    expect(story.timeline.find((m) => m.kind === 'accepted')?.title).toBe(
      'Accepted by the API (key shop, for tenant shop/acme) and queued',
    );
    expect(page).toMatch(/data-testid="tenant">\s*<code>shop\/acme<\/code>/);
  });

  it('an order without the header is its key’s', async () => {
    const orderId = await place(as());
    expect((await projected(orderId)).tenant).toBe('shop');
    const [row] = await query<{ tenant: string }>('SELECT tenant FROM orders WHERE order_id = $1', [orderId]);
    expect(row?.tenant).toBe('shop');
    expect(await eventTenants(orderId, 'order.placed')).toEqual(['shop']);
    const { story, page } = await storyOf(platform, orderId);
    expect(story.tenant).toBe('shop');
    expect(story.timeline.find((m) => m.kind === 'accepted')?.title).toBe(
      'Accepted by the API (key shop) and queued',
    );
    expect(page).toMatch(/data-testid="tenant">\s*<code>shop<\/code>/);
  });

  it('every order of a batch is the sub-tenant’s, and so is a rejected one’s order.rejected event', async () => {
    const res = await request<{ orders: { orderId: string }[] }>(url('/v1/orders/batch'), {
      method: 'POST',
      json: { orders: [sampleOrder(), sampleOrder({ currency: 'XXX' })] },
      headers: as('beta'),
    });
    expect(res.status).toBe(202);
    const [completed, rejected] = res.body.orders.map((o) => o.orderId) as [string, string];
    await projected(completed);
    expect((await projected(rejected, 'rejected')).tenant).toBe('shop/beta');
    const rows = await query<{ tenant: string }>(
      'SELECT tenant FROM orders WHERE order_id = ANY($1::uuid[]) ORDER BY tenant',
      [[completed, rejected]],
    );
    expect(rows).toEqual([{ tenant: 'shop/beta' }, { tenant: 'shop/beta' }]);
    expect(await eventTenants(rejected, 'order.rejected')).toEqual(['shop/beta']);
  });

  it('a refund is its sub-tenant’s in the refunds row and its refund.completed event', async () => {
    const orderId = await place(as('acme'));
    await projected(orderId);
    const res = await request(url(`/v1/orders/${orderId}/refunds`), {
      method: 'POST',
      json: { amountCents: 100 },
      headers: as('gamma'),
    });
    expect(res.status).toBe(202);
    const refundId = res.body.refundId as string;
    const row = await eventually(
      async () =>
        (
          await query<{ tenant: string; status: string }>(
            'SELECT tenant, status FROM refunds WHERE refund_id = $1',
            [refundId],
          )
        )[0],
      { what: 'the refund decided' },
    );
    expect(row).toEqual({ tenant: 'shop/gamma', status: 'completed' });
    expect(await eventTenants(orderId, 'refund.completed')).toEqual(['shop/gamma']);
  });

  it('a dead-lettered order keeps its tenant in the write model and its order.dead_lettered event', async () => {
    const customer = 'c-tenant-dead';
    // A real database failure for this customer's decisions (not its dead-lettered row): every attempt fails.
    await query(
      `CREATE OR REPLACE FUNCTION refuse_tenant_test() RETURNS trigger LANGUAGE plpgsql AS $$
       BEGIN IF NEW.customer_id = '${customer}' AND NEW.status <> 'dead_lettered' THEN
         RAISE EXCEPTION 'ledger offline'; END IF; RETURN NEW; END $$`,
      [],
    );
    await query(
      `CREATE TRIGGER refuse_tenant_test BEFORE INSERT OR UPDATE ON orders
         FOR EACH ROW EXECUTE FUNCTION refuse_tenant_test()`,
      [],
    );
    try {
      const orderId = await place(as('acme'), { customerId: customer });
      expect((await projected(orderId, 'dead_lettered')).tenant).toBe('shop/acme');
      const [row] = await query<{ tenant: string; status: string }>(
        'SELECT tenant, status FROM orders WHERE order_id = $1',
        [orderId],
      );
      expect(row).toEqual({ tenant: 'shop/acme', status: 'dead_lettered' });
      expect(await eventTenants(orderId, 'order.dead_lettered')).toEqual(['shop/acme']);
    } finally {
      await query('DROP TRIGGER refuse_tenant_test ON orders', []);
    }
  });

  it('documents the order’s tenant in the OpenAPI document', async () => {
    const doc = (await request(url('/openapi.json'))).body as {
      components: { schemas: Record<string, { properties?: Record<string, unknown> }> };
    };
    expect(Object.keys(doc.components.schemas['Order']?.properties ?? {})).toContain('tenant');
  });
});

describe('a tenant over its backlog quota (API alone: nothing drains)', () => {
  let platform: Platform;
  let orders: Queue;
  const url = (path: string) => `${platform.url}${path}`;

  beforeAll(async () => {
    // One job in the wait list at a time; sub-tenant `q` may have 2 more waiting for their turn.
    platform = await startPlatform(
      loadConfig(
        isolatedEnv({
          API_KEYS: shop.entry,
          TENANTS: 'shop:sub_tenants=on,shop/q:backlog_quota=2',
          FAIRNESS_DEPTH: '1',
        }),
        { modules: MODULES },
      ),
      { workers: [] },
    );
    const { redis, config } = platform.rt;
    orders = new Queue(
      OrdersQueues.commands,
      queueOptions(redis, config.redis.queuePrefix, OrdersQueues.commands),
    );
  });
  afterAll(async () => {
    await orders?.close();
    await platform?.close();
  });

  it('answers each refused order of a batch 429 and enqueues only the accepted ones', async () => {
    const res = await request<{ orders: ({ orderId: string } | { error: Body })[] }>(
      url('/v1/orders/batch'),
      {
        method: 'POST',
        json: { orders: Array.from({ length: 5 }, () => sampleOrder()) },
        headers: as('q'),
      },
    );
    expect(res.status).toBe(202);
    const answers = res.body.orders;
    // One goes straight in, two wait for their turn (the quota), the last two are refused.
    const accepted = answers.flatMap((a) => ('orderId' in a ? [a.orderId] : []));
    expect(accepted).toHaveLength(3);
    expect(answers.slice(3)).toEqual([
      { error: expect.objectContaining({ status: 429, code: 'tenant.quota_exceeded', tenant: 'shop/q' }) },
      { error: expect.objectContaining({ status: 429, code: 'tenant.quota_exceeded', tenant: 'shop/q' }) },
    ]);
    expect(await orders.count()).toBe(3);
    // Each accepted job carries its tenant: the story of one still queued reads it from the job.
    const job = await orders.getJob(accepted[0]!);
    expect(OrderJobSchema.parse(job?.data).tenant).toBe('shop/q');
    const { story, page } = await storyOf(platform, accepted[1]!);
    expect(story).toMatchObject({ order: null, tenant: 'shop/q' });
    expect(page).toContain('(a sub-tenant of key shop)');

    // Nothing left of the quota: a batch all refused, and a single order, are a 429 with Retry-After.
    const all = await request(url('/v1/orders/batch'), {
      method: 'POST',
      json: { orders: [sampleOrder()] },
      headers: as('q'),
    });
    expect(all.status).toBe(429);
    expect(all.body).toMatchObject({ code: 'tenant.quota_exceeded', tenant: 'shop/q' });
    expect(Number(all.headers.get('retry-after'))).toBeGreaterThan(0);
    const one = await request(url('/v1/orders'), { method: 'POST', json: sampleOrder(), headers: as('q') });
    expect(one.status).toBe(429);
    expect(one.body).toMatchObject({ code: 'tenant.quota_exceeded', tenant: 'shop/q' });
    expect(Number(one.headers.get('retry-after'))).toBeGreaterThan(0);
    expect(await orders.count()).toBe(3);
    // Another tenant of the same key is not affected.
    expect(
      (await request(url('/v1/orders'), { method: 'POST', json: sampleOrder(), headers: as() })).status,
    ).toBe(202);
  });
});

describe('the tenant in job data and event payloads (schemas)', () => {
  const job = {
    orderId: '00000000-0000-4000-8000-000000000001',
    correlationId: 'corr-tenant-1',
    acceptedAt: new Date().toISOString(),
    order: sampleOrder(),
  };

  it('is optional: jobs and events from before it still parse', () => {
    expect(OrderJobSchema.safeParse(job).success).toBe(true);
    const placed = {
      orderId: job.orderId,
      customerId: 'c-1',
      currency: 'EUR',
      totalCents: 2500,
      items: job.order.items,
      attempts: 1,
      acceptedAt: job.acceptedAt,
      completedAt: job.acceptedAt,
    };
    expect(OrderPlacedPayload.safeParse(placed).success).toBe(true);
    expect(OrderPlacedPayload.parse({ ...placed, tenant: 'shop/acme' }).tenant).toBe('shop/acme');
    expect(
      RefundCompletedPayload.safeParse({
        refundId: '00000000-0000-4000-8000-000000000002',
        orderId: job.orderId,
        amountCents: 1,
        reason: null,
        attempts: 1,
        requestedAt: job.acceptedAt,
        customerId: 'c-1',
        currency: 'EUR',
        completedAt: job.acceptedAt,
      }).success,
    ).toBe(true);
  });

  it('is validated like every other identifier: <key id> or <key id>/<sub>, 1-64 of [A-Za-z0-9._-] each', () => {
    for (const tenant of ['dev', 'shop/acme', 'a.b_c-d/E.9', `${'k'.repeat(64)}/${'s'.repeat(64)}`])
      expect(OrderJobSchema.safeParse({ ...job, tenant }).success, tenant).toBe(true);
    for (const tenant of ['', 'shop/', '/acme', 'a/b/c', 'sp ace', 'shop/ac:me', 'k'.repeat(65), 'shop/é'])
      expect(OrderJobSchema.safeParse({ ...job, tenant }).success, tenant).toBe(false);
    const refund = {
      refundId: '00000000-0000-4000-8000-000000000002',
      orderId: job.orderId,
      correlationId: 'corr-tenant-2',
      requestedAt: job.acceptedAt,
      refund: { amountCents: 1 },
    };
    expect(RefundJobSchema.safeParse(refund).success).toBe(true);
    expect(RefundJobSchema.safeParse({ ...refund, tenant: 'shop/acme' }).success).toBe(true);
    expect(RefundJobSchema.safeParse({ ...refund, tenant: 'a/b/c' }).success).toBe(false);
    expect(
      OrderDeadLetteredPayload.safeParse({
        orderId: job.orderId,
        customerId: null,
        currency: null,
        totalCents: null,
        items: null,
        attempts: 1,
        acceptedAt: null,
        tenant: 'shop//x',
        deadLetteredAt: job.acceptedAt,
        error: 'x',
        deadLetterId: 'dl-1',
      }).success,
    ).toBe(false);
  });
});
