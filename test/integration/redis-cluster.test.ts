import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  addBulkExactly,
  jobsThatExist,
  replicaWriters,
  ReplicasNotReachedError,
} from '../../shared/http/enqueue.ts';
import { createOrdersQueue, PLACE_ORDER_JOB } from '../../modules/orders/queue.ts';
import { createPool } from '../../shared/db/pool.ts';
import { allQueueNames, bullmqPrefix } from '../../shared/queue/names.ts';
import {
  clusterKeySlot,
  createProducerRedis,
  duplicateClient,
  isCluster,
  whenReady,
  type Redis,
} from '../../shared/queue/redis.ts';
import { bootstrap } from '../../shared/runtime/bootstrap.ts';
import { dropSchema, eventually, testConfig } from '../support/env.ts';
import { request, sampleOrder } from '../support/http.ts';
import { startPlatform, type Platform } from '../support/platform.ts';
import { ownRedisCluster, type OwnRedisCluster } from '../support/redis-cluster.ts';
import { MODULES } from '../../modules/registry.ts';

// Three masters, no replicas: the whole pipeline on a Redis Cluster, queues spread over the masters.
let cluster: OwnRedisCluster;
let platform: Platform;

beforeAll(async () => {
  cluster = await ownRedisCluster({ masters: 3 });
  platform = await startPlatform(testConfig({ REDIS_CLUSTER_NODES: cluster.seeds, EVENT_BUS: 'bullmq' }));
}, 60_000);
afterAll(async () => {
  await platform?.close({ keep: true }); // idempotent: the last test closes it before killing a master
  if (platform) {
    const pool = createPool({ ...platform.config.database, poolMax: 1 });
    await dropSchema(pool, platform.config.database.schema).finally(() => pool.end());
  }
  await cluster?.stop();
});

const url = (path: string) => `${platform.url}${path}`;

async function projected(path: string, status: string): Promise<Record<string, unknown>> {
  return eventually(
    async () => {
      const res = await request(url(path));
      return res.status === 200 && res.body.status === status && res.body.updatedAt !== null && res.body;
    },
    { timeoutMs: 15_000, what: `${path} to be ${status} in the read model` },
  );
}

describe('Conveyor on a Redis Cluster', () => {
  it('hashes keys to slots as the cluster does (hash tags honoured)', async () => {
    const node = cluster.connect(cluster.nodes[0]!.port);
    await node.connect();
    try {
      for (const key of ['orders', '{conveyor:orders}:orders:wait', 'a{}b', '{}x{y}', 'x{y}z', 'é{😀}']) {
        expect(clusterKeySlot(key), key).toBe(await node.call('CLUSTER', 'KEYSLOT', key));
      }
    } finally {
      node.disconnect();
    }
  });

  it('runs orders and refunds end to end: API, command workers, relay, BullMQ bus, projections', async () => {
    expect(isCluster(platform.rt.redis)).toBe(true);
    const placed = await Promise.all(
      Array.from({ length: 20 }, (_, i) =>
        request(url('/v1/orders'), { method: 'POST', json: sampleOrder({ customerId: `c-cl-${i}` }) }),
      ),
    );
    expect(placed.map((r) => r.status)).toEqual(placed.map(() => 202));
    const ids = placed.map((r) => r.body.orderId as string);
    for (const id of ids) await projected(`/v1/orders/${id}`, 'completed');

    const batch = await request(url('/v1/orders/batch'), {
      method: 'POST',
      json: { orders: [sampleOrder(), sampleOrder({ customerId: 'c-cl-batch' })] },
    });
    expect(batch.status).toBe(202);
    for (const o of batch.body.orders as { orderId: string }[])
      await projected(`/v1/orders/${o.orderId}`, 'completed');

    const refund = await request(url(`/v1/orders/${ids[0]!}/refunds`), {
      method: 'POST',
      json: { amountCents: 1000, reason: 'damaged' },
      headers: { 'idempotency-key': 'cluster-refund' },
    });
    expect(refund.status).toBe(202);
    await projected(`/v1/refunds/${refund.body.refundId as string}`, 'completed');
    // Idempotency key and session store work on the cluster too.
    const again = await request(url(`/v1/orders/${ids[0]!}/refunds`), {
      method: 'POST',
      json: { amountCents: 1000, reason: 'damaged' },
      headers: { 'idempotency-key': 'cluster-refund' },
    });
    expect(again.body.refundId).toBe(refund.body.refundId);
    const session = await request(url('/v1/sessions'), { method: 'POST' });
    expect(session.status).toBe(201);
    const sessionHeaders = { 'x-session-id': session.body.sessionId as string };
    expect((await request(url('/v1/stats'), { headers: sessionHeaders })).status).toBe(200);
    // The scaling endpoint and the metrics read the queues under their hash tags.
    const scaling = await request(url('/v1/scaling/orders'));
    expect(scaling.status).toBe(200);
    const metrics = await (await fetch(url('/metrics'))).text();
    expect(metrics).toMatch(/conveyor_queue_\w+\{[^}]*queue="orders"/);
  });

  it('keeps each queue in one slot and spreads the queues over more than one master', async () => {
    const prefix = platform.config.redis.queuePrefix;
    const owners = new Map<string, number>();
    for (const name of ['orders', 'refunds', 'events']) {
      const tagged = bullmqPrefix(platform.rt.redis, prefix, name);
      expect(tagged).toBe(`{${prefix}:${name}}`);
      // The keys exist where the slot says, and only there.
      const owner = await cluster.masterOf(`${tagged}:${name}:id`);
      const node = cluster.connect(owner.port);
      await node.connect();
      try {
        expect(await node.exists(`${tagged}:${name}:id`), `${name} on ${owner.address}`).toBe(1);
        const [, keys] = await node.scan(0, 'MATCH', `${tagged}:*`, 'COUNT', 10_000);
        expect(new Set(keys.map(clusterKeySlot))).toEqual(new Set([clusterKeySlot(tagged)]));
      } finally {
        node.disconnect();
      }
      owners.set(name, owner.port);
    }
    expect(new Set(owners.values()).size, JSON.stringify([...owners])).toBeGreaterThan(1);
    // Every queue the console and metrics show maps onto a tag of its family.
    for (const name of allQueueNames(MODULES))
      expect(bullmqPrefix(platform.rt.redis, prefix, name)).toMatch(/^\{.+\}$/);
  });

  it('REDIS_WAIT_REPLICAS: waits on the master owning the queue, and refuses when replicas are missing', async () => {
    const redis: Redis = createProducerRedis(
      { url: 'redis://127.0.0.1:6379', commandTimeoutMs: 2_000, clusterNodes: cluster.seeds.split(',') },
      'test-wait',
    );
    const queue = createOrdersQueue(redis, `${platform.config.redis.queuePrefix}-wait`);
    try {
      const target = { queue, jobName: PLACE_ORDER_JOB, jobOptions: {} };
      const job = (id: string) => ({ id, data: { orderId: id } });
      expect((await addBulkExactly(target, [job('w-0')], 2_000)).accepted).toEqual(new Set(['w-0']));
      const started = Date.now();
      const missing = await addBulkExactly(
        { ...target, replicaWait: { replicas: 1, timeoutMs: 200 } },
        [job('w-1'), job('w-2')],
        2_000,
      );
      expect(missing.accepted.size).toBe(0);
      expect(missing.error).toBeInstanceOf(ReplicasNotReachedError);
      expect(Date.now() - started).toBeLessThan(1_500);
      // The API's way: the add and its WAIT on a writer connection of their own (the slot's master there).
      const own = duplicateClient(redis, { connectionName: 'test-wait-writer' });
      await whenReady(own);
      const writers = replicaWriters([own], (c) =>
        createOrdersQueue(c, `${platform.config.redis.queuePrefix}-wait`),
      );
      try {
        const waited = await addBulkExactly(
          { ...target, replicaWait: { replicas: 1, timeoutMs: 200, writers } },
          [job('w-3')],
          2_000,
        );
        expect(waited.error).toBeInstanceOf(ReplicasNotReachedError);
        expect(await jobsThatExist(queue, ['w-3'])).toEqual(new Set(['w-3'])); // kept: a retry dedupes
      } finally {
        await writers.close();
        await own.quit();
      }
    } finally {
      await queue.obliterate({ force: true });
      await queue.close();
      await redis.quit();
    }
  });

  it('refuses to start when a master cannot be reached, naming it', async () => {
    await platform.close({ keep: true });
    const [victim] = await cluster.masters();
    await cluster.kill(victim!.port);
    const config = testConfig({
      REDIS_CLUSTER_NODES: cluster.seeds,
      DATABASE_SCHEMA: platform.config.database.schema,
    });
    await expect(bootstrap(config, 'test', MODULES)).rejects.toThrow(
      `Redis Cluster master ${victim!.address}`,
    );
  });
});
