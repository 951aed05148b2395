import { randomUUID } from 'node:crypto';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  addBulkExactly,
  coalescingEnqueue,
  replicaWriters,
  ReplicasNotReachedError,
  type JobTarget,
  type NewJob,
} from '../../../shared/http/enqueue.ts';
import { createOrdersQueue, PLACE_ORDER_JOB, type OrdersQueue } from '../../../modules/orders/queue.ts';
import { TenantQuotaExceededError } from '../../../shared/errors/domain.ts';
import { createFairQueue } from '../../../shared/fairness/fair-queue.ts';
import type { Tenant, TenantPolicy } from '../../../shared/fairness/tenants.ts';
import { commandJobOptions, createCommandQueue } from '../../../shared/queue/command-queue.ts';
import { generateApiKey } from '../../../shared/security/api-keys.ts';
import { TEST_REDIS_URL, testConfig, uniqueId } from '../../support/env.ts';
import { request, sampleOrder, type JsonResponse } from '../../support/http.ts';
import { startPlatform, type Platform } from '../../support/platform.ts';

// Issue #21, the API side of fairness: each request's tenant (its key, or a sub-tenant it names with
// Conveyor-Tenant), admission before the add (held jobs delayed until their turn), and the backlog
// quota: past it a command answers 429 with Retry-After and nothing of it is enqueued.

const HOLD_MS = 3_600_000;

const policy = (p: Partial<TenantPolicy> = {}): TenantPolicy => ({
  weight: 1,
  maxInFlight: 0,
  backlogQuota: 0,
  subTenants: false,
  ...p,
});
const tenant = (id: string, p: Partial<TenantPolicy> = {}): Tenant => ({ id, policy: policy(p) });

/** Jobs by state, as BullMQ reports them. */
async function counts(queue: OrdersQueue): Promise<{ waiting: number; delayed: number }> {
  const c = await queue.getJobCounts('waiting', 'delayed');
  return { waiting: c.waiting ?? 0, delayed: c.delayed ?? 0 };
}

describe('addBulkExactly with a fair queue (real Redis)', () => {
  const redis = new Redis(TEST_REDIS_URL, { maxRetriesPerRequest: 1 });
  const jobOptions = commandJobOptions({ attempts: 3, backoffMs: 50, keepCompletedSeconds: 60 });
  let prefix: string;
  let queue: OrdersQueue;
  let target: JobTarget;
  const job = (t: Tenant | undefined, id: string = randomUUID()): NewJob => ({
    id,
    data: { orderId: id, tenant: t?.id },
    tenant: t,
  });

  beforeAll(() => {
    prefix = uniqueId('fairapi');
    queue = createOrdersQueue(redis, prefix);
    const fair = createFairQueue(queue.name, queue.toKey(''), { depth: 2, holdMs: HOLD_MS });
    target = { queue, jobName: PLACE_ORDER_JOB, jobOptions, fair: { queue: fair, holdMs: HOLD_MS } };
  });
  afterAll(async () => {
    await queue.obliterate({ force: true });
    await queue.close();
    redis.disconnect();
  });

  it('adds jobs past the depth held (delayed by the hold), refuses those past the quota and adds nothing of them', async () => {
    const a = tenant('a', { backlogQuota: 3 });
    const jobs = Array.from({ length: 7 }, () => job(a));
    const result = await addBulkExactly(target, jobs, 2_000);

    const ids = jobs.map((j) => j.id);
    expect(result.error).toBeUndefined();
    expect([...result.accepted]).toEqual(ids.slice(0, 5));
    expect([...(result.refused?.keys() ?? [])]).toEqual(ids.slice(5));
    for (const err of result.refused!.values()) {
      expect(err).toBeInstanceOf(TenantQuotaExceededError);
      expect(err).toMatchObject({ status: 429, tenant: 'a', quota: 'backlog', limit: 3, queue: 'orders' });
    }
    expect(await counts(queue)).toEqual({ waiting: 2, delayed: 3 });
    const stored = await Promise.all(ids.map((id) => queue.getJob(id)));
    // Every option kept (job id, attempts, …); the held ones delayed by the hold.
    expect(stored.map((s) => s?.opts.delay ?? 0)).toEqual([0, 0, HOLD_MS, HOLD_MS, HOLD_MS, 0, 0]);
    expect(stored.slice(0, 5).every((s) => s?.opts.attempts === 3)).toBe(true);
    expect(stored.slice(0, 5).map((s) => s?.id)).toEqual(ids.slice(0, 5));
    expect(stored.slice(5)).toEqual([undefined, undefined]);
  });

  it('another tenant is still accepted; a job without a tenant goes in as before; a retried job id is not refused', async () => {
    const a = tenant('a', { backlogQuota: 3 });
    const b = tenant('b', { backlogQuota: 3 });
    const before = await counts(queue);
    const [oldHeld] = (await queue.getJobs(['delayed'])).map((j) => j.id!);
    const jobs = [job(b), job(undefined), job(a, oldHeld), job(a)];
    const result = await addBulkExactly(target, jobs, 2_000);
    // b: held (the wait list is at its depth), under its own quota; the tenant-less job: straight in.
    expect(result.accepted).toEqual(new Set([jobs[0]!.id, jobs[1]!.id, oldHeld]));
    expect([...(result.refused?.keys() ?? [])]).toEqual([jobs[3]!.id]);
    expect(await counts(queue)).toEqual({ waiting: before.waiting + 1, delayed: before.delayed + 1 });
    expect((await queue.getJob(jobs[0]!.id))?.opts.delay).toBe(HOLD_MS);
  });

  it('admits a job id met twice in one bulk once (both callers accepted)', async () => {
    const c = tenant('c', { backlogQuota: 1 });
    const id = randomUUID();
    const result = await addBulkExactly(target, [job(c, id), job(c, id)], 2_000);
    expect(result.refused).toBeUndefined();
    expect(result.accepted).toEqual(new Set([id]));
    expect(await queue.getJobState(id)).toBe('delayed');
  });

  it('coalescingEnqueue rejects exactly the refused callers, with their 429 error', async () => {
    const d = tenant('d', { backlogQuota: 2 });
    const e = tenant('e', { backlogQuota: 2 });
    const enqueue = coalescingEnqueue(target, {
      maxBatch: 16,
      maxWaitMs: 0,
      timeoutMs: 2_000,
      maxInFlight: 1,
    });
    const jobs = [job(d), job(d), job(e), job(d), job(e)];
    const outcomes = await Promise.allSettled(jobs.map((j) => enqueue(j)));
    expect(outcomes.map((o) => o.status)).toEqual([
      'fulfilled',
      'fulfilled',
      'fulfilled',
      'rejected',
      'fulfilled',
    ]);
    const reason = (outcomes[3] as PromiseRejectedResult).reason as TenantQuotaExceededError;
    expect(reason).toBeInstanceOf(TenantQuotaExceededError);
    expect(reason).toMatchObject({ tenant: 'd', limit: 2, retryAfterSeconds: expect.any(Number) });
    expect(await queue.getJob(jobs[3]!.id)).toBeUndefined();
  });

  it('a failed admission adds nothing and answers every job with its error', async () => {
    const broken = uniqueId('fairbroken');
    const q = createOrdersQueue(redis, broken);
    try {
      // The fair queue's policy hash holds a string: its admission script fails (WRONGTYPE).
      await redis.set(`${q.toKey('')}fair:policy`, 'not a hash');
      const fair = createFairQueue(q.name, q.toKey(''), { depth: 2, holdMs: HOLD_MS });
      const t: JobTarget = {
        queue: q,
        jobName: PLACE_ORDER_JOB,
        jobOptions,
        fair: { queue: fair, holdMs: HOLD_MS },
      };
      const jobs = [job(tenant('a')), job(undefined)];
      const result = await addBulkExactly(t, jobs, 2_000);
      expect(result.accepted.size).toBe(0);
      expect(String(result.error)).toMatch(/WRONGTYPE/);
      expect(result.refused).toBeUndefined();
      const c = await q.getJobCounts('waiting', 'delayed', 'prioritized', 'paused');
      expect(Object.values(c).reduce((x, y) => x + y, 0)).toBe(0);
      expect(await q.getJob(jobs[1]!.id)).toBeUndefined();
    } finally {
      await q.obliterate({ force: true });
      await redis.del(`${q.toKey('')}fair:policy`);
      await q.close();
    }
  });

  it('admits on the leased writer connection when replica waits are on (and keeps refusals past a failed WAIT)', async () => {
    const writerRedis = new Redis(TEST_REDIS_URL, { maxRetriesPerRequest: 1 });
    const writers = replicaWriters([writerRedis], (c, name) => createCommandQueue(c, prefix, name));
    try {
      const f = tenant('f', { backlogQuota: 1 });
      const jobs = [job(f), job(f)];
      // No replica: WAIT reaches 0 of 1, so nothing counts as accepted; but the admission ran first.
      const result = await addBulkExactly(
        { ...target, replicaWait: { replicas: 1, timeoutMs: 100, writers } },
        jobs,
        2_000,
      );
      expect(result.accepted.size).toBe(0);
      expect(result.error).toBeInstanceOf(ReplicasNotReachedError);
      expect([...(result.refused?.keys() ?? [])]).toEqual([jobs[1]!.id]);
      expect(await queue.getJobState(jobs[0]!.id)).toBe('delayed');
      expect(await queue.getJob(jobs[1]!.id)).toBeUndefined();
    } finally {
      await writers.close();
      writerRedis.disconnect();
    }
  });
});

describe('the API: Conveyor-Tenant, admission and the backlog quota', () => {
  const shop = generateApiKey('shop', ['orders:write', 'orders:read']);
  const plain = generateApiKey('plain', ['orders:write', 'orders:read']);
  const bearer = (k: { key: string }, sub?: string): Record<string, string> => ({
    authorization: `Bearer ${k.key}`,
    ...(sub === undefined ? {} : { 'conveyor-tenant': sub }),
  });
  let platform: Platform;
  let queue: OrdersQueue;
  const url = (path: string) => `${platform.url}${path}`;
  const post = (headers: Record<string, string>) =>
    request<{ orderId: string; code?: string }>(url('/v1/orders'), {
      method: 'POST',
      json: sampleOrder(),
      headers,
    });
  const jobsInRedis = async () => {
    const c = await queue.getJobCounts('waiting', 'delayed', 'prioritized', 'active');
    return Object.values(c).reduce((x, y) => x + y, 0);
  };

  beforeAll(async () => {
    // No workers: nothing drains, so the wait list stays at FAIRNESS_DEPTH and the rest is held.
    platform = await startPlatform(
      testConfig({
        API_KEYS: [shop.entry, plain.entry].join(','),
        TENANTS: 'shop:sub_tenants=on',
        TENANT_BACKLOG_QUOTA: '3',
        FAIRNESS_DEPTH: '2',
        FAIRNESS_HOLD_HOURS: '1',
      }),
      { workers: [] },
    );
    queue = createOrdersQueue(platform.rt.redis, platform.config.redis.queuePrefix);
  });
  afterAll(async () => {
    await queue?.close();
    await platform?.close();
  });

  it('answers 400 for a malformed Conveyor-Tenant and 403 for a key not allowed sub-tenants, as problems', async () => {
    const malformed = await post(bearer(shop, 'acme corp!'));
    expect(malformed.status).toBe(400);
    expect(malformed.headers.get('content-type')).toMatch(/^application\/problem\+json/);
    expect(malformed.body).toMatchObject({
      status: 400,
      code: 'tenant.invalid',
      type: 'https://conveyor.dev/problems/tenant-invalid',
    });
    const tooLong = await post(bearer(shop, 'x'.repeat(65)));
    expect(tooLong.status).toBe(400);

    const forbidden = await post(bearer(plain, 'acme'));
    expect(forbidden.status).toBe(403);
    expect(forbidden.body).toMatchObject({
      status: 403,
      code: 'tenant.forbidden',
      type: 'https://conveyor.dev/problems/tenant-forbidden',
    });
    expect(String((forbidden.body as { detail?: string }).detail)).toContain('sub_tenants=on');
    expect(await jobsInRedis()).toBe(0);

    const accepted = await post(bearer(shop, 'acme'));
    expect(accepted.status).toBe(202);
    const stored = await queue.getJob(accepted.body.orderId);
    expect((stored?.data as { tenant?: string } | undefined)?.tenant).toBe('shop/acme');
  });

  it("past a tenant's backlog quota: 429 with Retry-After naming the quota, nothing enqueued; another tenant still accepted", async () => {
    // plain: the wait list holds FAIRNESS_DEPTH (2) jobs, shop/acme's among them; then 3 held (the quota).
    const statuses: number[] = [];
    let refused: JsonResponse<{ orderId: string; code?: string }> | undefined;
    for (let i = 0; i < 8 && !refused; i++) {
      const res = await post(bearer(plain));
      statuses.push(res.status);
      if (res.status === 429) refused = res;
    }
    expect(statuses).toEqual([202, 202, 202, 202, 429]);
    const inRedis = await jobsInRedis();
    expect(await counts(queue)).toEqual({ waiting: 2, delayed: 3 });

    expect(refused!.headers.get('retry-after')).toMatch(/^[1-9]\d*$/);
    expect(refused!.headers.get('content-type')).toMatch(/^application\/problem\+json/);
    expect(refused!.body).toMatchObject({
      status: 429,
      code: 'tenant.quota_exceeded',
      type: 'https://conveyor.dev/problems/tenant-quota-exceeded',
      tenant: 'plain',
      quota: 'backlog',
      limit: 3,
    });
    // Again and again: nothing more is enqueued.
    for (let i = 0; i < 3; i++) expect((await post(bearer(plain))).status).toBe(429);
    expect(await jobsInRedis()).toBe(inRedis);

    // The key's other tenant (its sub-tenant) and the shop key itself are unaffected.
    expect((await post(bearer(shop))).status).toBe(202);
    expect((await post(bearer(shop, 'acme'))).status).toBe(202);
    expect(await jobsInRedis()).toBe(inRedis + 2);
  });

  it('the batch route answers each refused item with its own 429 problem, and enqueues only the others', async () => {
    // shop (not its sub-tenant) has 1 held after the test above: 2 more fit, 2 do not.
    const before = await jobsInRedis();
    const res = await request<{
      orders: ({ orderId: string; status: string } | { error: Record<string, unknown> })[];
    }>(url('/v1/orders/batch'), {
      method: 'POST',
      json: { orders: Array.from({ length: 4 }, () => sampleOrder()) },
      headers: bearer(shop),
    });
    expect(res.status).toBe(202);
    const items = res.body.orders;
    expect(items.slice(0, 2).every((r) => 'orderId' in r && r.status === 'queued')).toBe(true);
    for (const r of items.slice(2))
      expect(r).toMatchObject({
        error: {
          status: 429,
          code: 'tenant.quota_exceeded',
          tenant: 'shop',
          quota: 'backlog',
          limit: 3,
          retryAfterSeconds: expect.any(Number),
        },
      });
    expect(await jobsInRedis()).toBe(before + 2);
  });

  it('a held order is a delayed BullMQ job (the hold) and still reads as queued', async () => {
    const res = await post(bearer(shop, 'held'));
    expect(res.status).toBe(202);
    const id = res.body.orderId;
    expect(await queue.getJobState(id)).toBe('delayed');
    expect((await queue.getJob(id))?.opts.delay).toBe(HOLD_MS);
    const read = await request<{ status: string }>(url(`/v1/orders/${id}`), { headers: bearer(shop) });
    expect(read.status).toBe(200);
    expect(read.body.status).toBe('queued');
  });

  it('scopes an Idempotency-Key per tenant: two sub-tenants of one key with the same key and body get two orders', async () => {
    const idem = (sub: string) =>
      request<{ orderId: string }>(url('/v1/orders'), {
        method: 'POST',
        json: sampleOrder(),
        headers: { ...bearer(shop, sub), 'idempotency-key': 'same-key-for-both' },
      });
    const a = await idem('idem-a');
    const b = await idem('idem-b');
    const again = await idem('idem-a');
    expect([a.status, b.status, again.status]).toEqual([202, 202, 202]);
    expect(b.body.orderId).not.toBe(a.body.orderId);
    expect(again.body.orderId).toBe(a.body.orderId);
    expect(again.headers.get('idempotent-replayed')).toBe('true');
  });
});

describe('the development key', () => {
  let platform: Platform;
  beforeAll(async () => {
    platform = await startPlatform(testConfig({ FAIRNESS_DEPTH: '1', TENANT_BACKLOG_QUOTA: '1' }), {
      workers: [],
    });
  });
  afterAll(async () => {
    await platform?.close();
  });

  it('is tenant "dev", with a quota of its own like any key', async () => {
    const post = () =>
      request<{ orderId: string }>(`${platform.url}/v1/orders`, { method: 'POST', json: sampleOrder() });
    const statuses = [(await post()).status, (await post()).status, (await post()).status];
    expect(statuses).toEqual([202, 202, 429]);
    const last = await post();
    expect(last.body).toMatchObject({ code: 'tenant.quota_exceeded', tenant: 'dev' });
  });
});
