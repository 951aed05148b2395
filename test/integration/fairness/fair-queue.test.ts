import { Queue, Worker, type Job } from 'bullmq';
import { Redis as IORedis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createFairQueue, type FairQueue } from '../../../shared/fairness/fair-queue.ts';
import type { Tenant, TenantPolicy } from '../../../shared/fairness/tenants.ts';
import { eventually, TEST_REDIS_URL, uniqueId } from '../../support/env.ts';

const HOLD_MS = 7 * 86_400_000;
const policy = (p: Partial<TenantPolicy> = {}): TenantPolicy => ({
  weight: 1,
  maxInFlight: 0,
  backlogQuota: 0,
  subTenants: false,
  ...p,
});
const tenant = (id: string, p: Partial<TenantPolicy> = {}): Tenant => ({ id, policy: policy(p) });

/** Admits then adds `ids` for `t` the way the API does: held ones with the hold delay. */
async function post(fair: FairQueue, queue: Queue, client: IORedis, t: Tenant, ids: string[]) {
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
  return admitted;
}

describe('fair queue (Lua on real Redis, executed by a real BullMQ worker)', () => {
  const client = new IORedis(TEST_REDIS_URL, { maxRetriesPerRequest: null });
  const opened: Queue[] = [];
  /** A fresh queue (its own prefix) and its fair queue of `depth`. */
  function fresh(depth: number, grace?: number) {
    const prefix = uniqueId('fair');
    const queue = new Queue('orders', { connection: client, prefix });
    opened.push(queue);
    const fair = createFairQueue('orders', queue.toKey(''), {
      depth,
      holdMs: HOLD_MS,
      ...(grace === undefined ? {} : { pendingGraceMs: grace }),
    });
    return { prefix, queue, fair };
  }
  /** Promotes until nothing moves, taking every promoted job off the wait list as a worker would (in order). */
  async function drainOrder(queue: Queue, fair: FairQueue, max = 10_000): Promise<string[]> {
    const taken: string[] = [];
    const wait = queue.toKey('wait');
    for (let i = 0; i < max; i++) {
      const { promoted } = await fair.dispatch(client, []);
      const ids = await client.lrange(wait, 0, -1);
      await client.del(wait);
      taken.push(...ids.reverse());
      if (promoted === 0 && ids.length === 0) break;
    }
    return taken;
  }
  beforeAll(() => undefined);
  afterAll(async () => {
    for (const q of opened) await q.close();
    await client.quit();
  });

  it('takes commands across tenants in turn: a flood of A does not keep B and C waiting', async () => {
    const { prefix, queue, fair } = fresh(4);
    const a = tenant('a');
    const floodIds = Array.from({ length: 200 }, (_, i) => `a-${i}`);
    const admittedA = await post(fair, queue, client, a, floodIds);
    expect(admittedA.filter((x) => x === 'direct')).toHaveLength(4);
    expect(admittedA.filter((x) => x === 'held')).toHaveLength(196);
    await post(fair, queue, client, tenant('b'), ['b-0', 'b-1']);
    await post(fair, queue, client, tenant('c'), ['c-0']);
    expect(await queue.getJobCountByTypes('delayed')).toBe(199);

    const order: string[] = [];
    const worker = new Worker(
      'orders',
      async (job: Job) => {
        order.push(job.id!);
      },
      { connection: new IORedis(TEST_REDIS_URL, { maxRetriesPerRequest: null }), prefix, concurrency: 1 },
    );
    worker.on('completed', () => void fair.dispatch(client, []));
    await fair.dispatch(client, []);
    await eventually(() => order.length === 203, { timeoutMs: 20_000 });
    await worker.close();
    // A's in its own order; B and C each just began waiting, so their first goes to the front.
    expect(order.filter((id) => id.startsWith('a-')).slice(0, 4)).toEqual(['a-0', 'a-1', 'a-2', 'a-3']);
    const firstB = order.indexOf('b-0');
    expect(firstB).toBeLessThan(4 + 4 + 3);
    expect(order.indexOf('b-1')).toBeLessThan(4 + 4 + 6);
    expect(order.indexOf('c-0')).toBeLessThan(4 + 4 + 3);
    expect(new Set(order).size).toBe(203);
  });

  it("puts a tenant that just began waiting at the front of the wait list: one quiet order skips the flood's depth", async () => {
    const { queue, fair } = fresh(5);
    await post(fair, queue, client, tenant('flood'), range('f', 50)); // 5 direct, 45 held
    await client.del(queue.toKey('wait'));
    await fair.dispatch(client, []); // the wait list: 5 of the flood again
    await post(fair, queue, client, tenant('quiet'), ['q-0', 'q-1']); // held: the list is full
    // A worker takes two: room for two more, one turn each (the flood's turn came first).
    await client.rpop(queue.toKey('wait'));
    await client.rpop(queue.toKey('wait'));
    await fair.dispatch(client, []);
    // Taken next (BullMQ takes from the right end): the quiet tenant's first, not behind the flood's 4.
    expect(await client.lindex(queue.toKey('wait'), -1)).toBe('q-0');
    expect(await client.llen(queue.toKey('wait'))).toBe(5);
    await client.rpop(queue.toKey('wait'));
    await client.rpop(queue.toKey('wait'));
    await fair.dispatch(client, []);
    // Its second waits its turn at the back like anyone's.
    expect(await client.lrange(queue.toKey('wait'), 0, 1)).toContain('q-1');
  });

  it('gives weights their share: 3:1 while both have commands waiting', async () => {
    const { queue, fair } = fresh(1);
    await post(fair, queue, client, tenant('heavy', { weight: 3 }), ['h-x']); // direct: fills the wait list
    await post(fair, queue, client, tenant('heavy', { weight: 3 }), range('h', 60));
    await post(fair, queue, client, tenant('light'), range('l', 60));
    await client.del(queue.toKey('wait'));
    const order = await drainOrder(queue, fair);
    const first40 = order.slice(0, 40);
    expect(first40.filter((id) => id.startsWith('h-')).length).toBe(30);
    expect(first40.filter((id) => id.startsWith('l-')).length).toBe(10);
    expect(new Set(order).size).toBe(120);
  });

  it('holds a tenant at its in-flight limit and gives the turn on; finishing gives the slot back', async () => {
    const { queue, fair } = fresh(50);
    const limited = tenant('limited', { maxInFlight: 2 });
    const admitted = await post(fair, queue, client, limited, range('m', 5));
    expect(admitted).toEqual(['direct', 'direct', 'held', 'held', 'held']);
    await post(fair, queue, client, tenant('free'), range('f', 3));
    // The direct ones only: limited is at its limit (m-0, m-1 not finished), free went straight in.
    expect(await drainOrder(queue, fair)).toEqual(['m-0', 'm-1', 'f-0', 'f-1', 'f-2']);
    expect((await fair.backlog(client, 10)).tenants).toMatchObject([
      { tenant: 'limited', waiting: 3, inFlight: 2, blocked: true, maxInFlight: 2 },
    ]);
    await fair.dispatch(client, ['m-0']);
    expect(await client.lrange(queue.toKey('wait'), 0, -1)).toContain('m-2');
    expect((await fair.backlog(client, 10)).tenants[0]).toMatchObject({ waiting: 2, inFlight: 2 });
  });

  it('sweeps a slot whose job finished without giving it back (its worker was killed)', async () => {
    const { queue, fair } = fresh(50);
    const limited = tenant('limited', { maxInFlight: 1 });
    await post(fair, queue, client, limited, ['k-0', 'k-1']);
    // k-0 finishes, but its worker dies before releasing the slot.
    await client.hset(queue.toKey('k-0'), 'finishedOn', Date.now());
    expect((await fair.dispatch(client, [])).promoted).toBe(0);
    expect((await fair.dispatch(client, [], { sweep: true })).promoted).toBe(1);
    expect(await client.lrange(queue.toKey('wait'), 0, -1)).toContain('k-1');
  });

  it('does not sweep the slot of a job admitted straight in whose add has not arrived yet', async () => {
    const { queue, fair } = fresh(50, 300);
    const limited = tenant('limited', { maxInFlight: 1 });
    // Admitted, not added yet (the API adds right after): s-0 straight in, s-1 waits (at the limit).
    expect(
      await fair.admit(client, [
        { id: 's-0', tenant: limited },
        { id: 's-1', tenant: limited },
      ]),
    ).toEqual(['direct', 'held']);
    await queue.add('cmd', {}, { jobId: 's-1', delay: HOLD_MS });
    // A sweep now would let s-1 in beside s-0: two in flight for a limit of one.
    expect((await fair.dispatch(client, [], { sweep: true })).promoted).toBe(0);
    // s-0's add never comes: past the grace its slot is taken for gone.
    await eventually(async () => (await fair.dispatch(client, [], { sweep: true })).promoted === 1, {
      timeoutMs: 5_000,
    });
  });

  it('refuses past the backlog quota, and a retried job id is not held twice', async () => {
    const { queue, fair } = fresh(1);
    const quota = tenant('q', { backlogQuota: 2 });
    const admitted = await post(fair, queue, client, quota, range('q', 5));
    expect(admitted).toEqual(['direct', 'held', 'held', 'over-quota', 'over-quota']);
    expect(await queue.getJobCountByTypes('delayed', 'wait')).toBe(3);
    expect(await fair.admit(client, [{ id: 'q-1', tenant: quota }])).toEqual(['exists']);
    await post(fair, queue, client, tenant('other', { backlogQuota: 2 }), ['o-0']);
    expect((await fair.backlog(client, 10)).tenants.map((t) => [t.tenant, t.waiting])).toEqual([
      ['q', 2],
      ['other', 1],
    ]);
  });

  it('keeps the place of a registered job whose add has not arrived, and drops it after the grace', async () => {
    const { queue, fair } = fresh(10, 200);
    const late = tenant('late');
    await client.rpush(queue.toKey('wait'), ...range('fill', 10)); // the wait list is full
    expect(await fair.admit(client, [{ id: 'late-0', tenant: late }])).toEqual(['held']);
    await client.del(queue.toKey('wait'));
    expect((await fair.dispatch(client, [])).promoted).toBe(0); // not added yet: kept
    expect((await fair.backlog(client, 10)).tenants[0]).toMatchObject({ tenant: 'late', waiting: 1 });
    await eventually(
      async () => {
        await fair.dispatch(client, []);
        return (await fair.backlog(client, 10)).tenants.length === 0;
      },
      { timeoutMs: 5_000 },
    );
  });

  it('promotes nothing while the queue is paused, and everything once resumed', async () => {
    const { queue, fair } = fresh(1);
    await post(fair, queue, client, tenant('p'), range('p', 3));
    await queue.pause();
    expect((await fair.dispatch(client, [])).promoted).toBe(0);
    await queue.resume();
    await client.del(queue.toKey('wait'));
    expect(await drainOrder(queue, fair)).toEqual(['p-1', 'p-2']);
  });
});

function range(prefix: string, n: number): string[] {
  return Array.from({ length: n }, (_, i) => `${prefix}-${i}`);
}
