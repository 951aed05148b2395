import { Queue } from 'bullmq';
import { Redis as IORedis } from 'ioredis';
import { afterAll, describe, expect, it } from 'vitest';
import { createFairQueue, type FairQueue } from '../../../shared/fairness/fair-queue.ts';
import type { Tenant, TenantPolicy } from '../../../shared/fairness/tenants.ts';
import { createMetrics, OTHER_TENANTS } from '../../../shared/observability/metrics.ts';
import { TEST_REDIS_URL, uniqueId } from '../../support/env.ts';
import { sample } from '../../support/prometheus.ts';
import { MODULES } from '../../../modules/registry.ts';

// The per-tenant fairness metrics on real Redis: a real fair queue (admit + BullMQ addBulk, held jobs
// delayed as the API adds them, dispatch as the workers call it) read by the /metrics collectors.
const HOLD_MS = 7 * 86_400_000;
const tenant = (id: string, p: Partial<TenantPolicy> = {}): Tenant => ({
  id,
  policy: { weight: 1, maxInFlight: 0, backlogQuota: 0, subTenants: false, ...p },
});
const range = (prefix: string, n: number) => Array.from({ length: n }, (_, i) => `${prefix}-${i}`);

const client = new IORedis(TEST_REDIS_URL, { maxRetriesPerRequest: null });
const releases: (() => Promise<unknown>)[] = [];
afterAll(async () => {
  for (const release of releases.toReversed()) await release().catch(() => undefined);
  await client.quit();
});

/** Admits then adds `ids` for `t` the way the API does: held ones with the hold delay. */
async function post(fair: FairQueue, queue: Queue, t: Tenant, ids: string[]): Promise<void> {
  const admitted = await fair.admit(
    client,
    ids.map((id) => ({ id, tenant: t })),
  );
  const jobs = ids
    .map((id, i) => ({ id, how: admitted[i]! }))
    .filter((j) => j.how !== 'over-quota')
    .map((j) => ({
      name: 'cmd',
      data: { tenant: t.id },
      opts: { jobId: j.id, ...(j.how === 'held' ? { delay: HOLD_MS } : {}) },
    }));
  if (jobs.length > 0) await queue.addBulk(jobs);
}

/** What a worker would do `n` times: take the wait list (here: empty it) and let dispatch top it up. */
async function promote(fair: FairQueue, queue: Queue, n: number): Promise<void> {
  for (let i = 0; i < n; i++) {
    await client.del(queue.toKey('wait'));
    await fair.dispatch(client, []);
  }
}

/** A fresh `orders` queue (its own prefix) with a fair queue of depth 1, and metrics naming `top` tenants. */
function fresh(top: number) {
  const prefix = uniqueId('tm');
  const queue = new Queue('orders', { connection: client, prefix });
  const fair = createFairQueue('orders', queue.toKey(''), { depth: 1, holdMs: HOLD_MS });
  const metrics = createMetrics({ defaultMetrics: false });
  const clock = { now: Date.now() };
  metrics.watchQueues({
    connection: client,
    prefix,
    modules: MODULES,
    queues: ['orders'],
    tenantsTop: top,
    now: () => clock.now,
  });
  releases.push(async () => {
    await metrics.close();
    await queue.obliterate({ force: true });
    await queue.close();
    const keys = await client.keys(`${prefix}:*`);
    if (keys.length > 0) await client.del(...keys);
  });
  const tenantSample = (text: string, metric: string, t: string) =>
    sample(text, metric, { queue: 'orders', tenant: t });
  return { queue, fair, metrics, clock, tenantSample };
}

describe('per-tenant fairness metrics', () => {
  it('names the largest backlogs and sums the rest as (other), with oldest wait, in flight and started', async () => {
    const { queue, fair, metrics, clock, tenantSample } = fresh(2);
    await post(fair, queue, tenant('z'), ['z-0']); // straight in: the wait list (depth 1) is full
    const before = Date.now();
    await post(fair, queue, tenant('a'), range('a', 6));
    await post(fair, queue, tenant('b', { maxInFlight: 3, weight: 2 }), range('b', 4));
    await post(fair, queue, tenant('c'), range('c', 2));
    await post(fair, queue, tenant('d'), range('d', 1));
    const after = Date.now();
    clock.now = after + 90_000;

    const text = await metrics.render();
    expect(sample(text, 'conveyor_metrics_collector_up', { collector: 'queues' })).toBe(1);
    expect(tenantSample(text, 'conveyor_tenant_backlog', 'a')).toBe(6);
    expect(tenantSample(text, 'conveyor_tenant_backlog', 'b')).toBe(4);
    expect(tenantSample(text, 'conveyor_tenant_backlog', OTHER_TENANTS)).toBe(3); // c and d
    expect(tenantSample(text, 'conveyor_tenant_backlog', 'c')).toBeUndefined();
    expect(tenantSample(text, 'conveyor_tenant_backlog', 'z')).toBeUndefined(); // nothing waiting
    // Oldest wait: from each tenant's oldest held command, on the reader's clock.
    const span = (after - before) / 1_000;
    for (const t of ['a', 'b', OTHER_TENANTS]) {
      const age = tenantSample(text, 'conveyor_tenant_oldest_wait_seconds', t)!;
      expect(age, t).toBeGreaterThanOrEqual(90);
      expect(age, t).toBeLessThanOrEqual(90 + span);
    }
    // In flight only for a tenant with a limit (nothing handed to a worker yet).
    expect(tenantSample(text, 'conveyor_tenant_in_flight', 'b')).toBe(0);
    expect(tenantSample(text, 'conveyor_tenant_in_flight', 'a')).toBeUndefined();
    // Throughput needs two reads.
    expect(text).not.toMatch(/^conveyor_tenant_throughput\{/m);
    expect(sample(text, 'conveyor_fairness_started_total', { queue: 'orders' })).toBe(1);
    // The queue's own gauges count the held commands as held, not delayed, and in the oldest age.
    expect(sample(text, 'conveyor_queue_jobs', { queue: 'orders', state: 'held' })).toBe(13);
    expect(sample(text, 'conveyor_queue_jobs', { queue: 'orders', state: 'delayed' })).toBe(0);
    expect(sample(text, 'conveyor_queue_jobs', { queue: 'orders', state: 'waiting' })).toBe(1);
    expect(
      sample(text, 'conveyor_queue_oldest_waiting_age_seconds', { queue: 'orders' }),
    ).toBeGreaterThanOrEqual(90);
  });

  it('drops a tenant that leaves the top, measures throughput between reads, and empties with the queue', async () => {
    const { queue, fair, metrics, clock, tenantSample } = fresh(2);
    await post(fair, queue, tenant('z'), ['z-0']);
    await post(fair, queue, tenant('a'), range('a', 6));
    await post(fair, queue, tenant('b', { maxInFlight: 3 }), range('b', 4));
    await post(fair, queue, tenant('c'), range('c', 2));
    await post(fair, queue, tenant('d'), range('d', 1));
    const first = await metrics.render(); // the throughput's baseline: a and b named, 1 started
    expect(tenantSample(first, 'conveyor_tenant_backlog', 'b')).toBe(4);

    // c grows past b: b leaves the top and loses every series at once.
    await post(fair, queue, tenant('c'), range('c-more', 10));
    const second = await metrics.render();
    expect(tenantSample(second, 'conveyor_tenant_backlog', 'c')).toBe(12);
    expect(tenantSample(second, 'conveyor_tenant_backlog', 'a')).toBe(6);
    expect(tenantSample(second, 'conveyor_tenant_backlog', 'b')).toBeUndefined();
    expect(tenantSample(second, 'conveyor_tenant_in_flight', 'b')).toBeUndefined();
    expect(tenantSample(second, 'conveyor_tenant_oldest_wait_seconds', 'b')).toBeUndefined();
    expect(tenantSample(second, 'conveyor_tenant_backlog', OTHER_TENANTS)).toBe(5); // b 4 + d 1

    // Four turns, one per tenant (a, b, c, d), over 10 s of the reader's clock.
    await promote(fair, queue, 4);
    clock.now += 10_000;
    const third = await metrics.render();
    expect(sample(third, 'conveyor_fairness_started_total', { queue: 'orders' })).toBe(5);
    // a was named by both reads: its own 1 in 10 s. c is new to the top: its share is in (other) this
    // time, with b's and d's; together they are the queue's 4.
    expect(tenantSample(third, 'conveyor_tenant_throughput', 'a')).toBeCloseTo(0.1, 6);
    expect(tenantSample(third, 'conveyor_tenant_throughput', 'c')).toBeUndefined();
    expect(tenantSample(third, 'conveyor_tenant_throughput', OTHER_TENANTS)).toBeCloseTo(0.3, 6);
    expect(tenantSample(third, 'conveyor_tenant_backlog', 'd')).toBeUndefined();

    // Next read: c, named by both reads now, has its own share (0: the two turns went to a and b).
    await promote(fair, queue, 2);
    clock.now += 10_000;
    const fourth = await metrics.render();
    expect(tenantSample(fourth, 'conveyor_tenant_throughput', 'a')).toBeCloseTo(0.1, 6);
    expect(tenantSample(fourth, 'conveyor_tenant_throughput', 'c')).toBe(0);
    expect(tenantSample(fourth, 'conveyor_tenant_throughput', OTHER_TENANTS)).toBeCloseTo(0.1, 6);

    // Everything promoted (b's finished jobs give their slots back): no tenant is named, (other) is 0.
    await fair.dispatch(client, range('b', 4));
    await promote(fair, queue, 40);
    expect((await fair.backlog(client, 10)).tenants).toEqual([]);
    const drained = await metrics.render();
    expect(drained).not.toMatch(/^conveyor_tenant_backlog\{queue="orders",tenant="[a-d]"\}/m);
    expect(tenantSample(drained, 'conveyor_tenant_backlog', OTHER_TENANTS)).toBe(0);
    expect(tenantSample(drained, 'conveyor_tenant_oldest_wait_seconds', OTHER_TENANTS)).toBe(0);
    expect(sample(drained, 'conveyor_queue_jobs', { queue: 'orders', state: 'held' })).toBe(0);
    expect(sample(drained, 'conveyor_fairness_started_total', { queue: 'orders' })).toBe(1 + 6 + 4 + 12 + 1);
  });
});
