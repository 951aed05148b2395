/**
 * What REDIS_WAIT_REPLICAS costs an enqueue: one job at a time through `addBulkExactly` (the API's
 * enqueue) on a private local Redis Cluster (3 masters, 1 replica each), without and with `WAIT 1`.
 * Run: node --import tsx bench/redis-wait.ts [jobs=2000] [concurrency=1]
 */
import { performance } from 'node:perf_hooks';
import { addBulkExactly, type JobTarget } from '../shared/http/enqueue.ts';
import { createCommandQueue } from '../shared/queue/command-queue.ts';
import { createProducerRedis, whenReady } from '../shared/queue/redis.ts';
import { ownRedisCluster } from '../test/support/redis-cluster.ts';
import { percentile } from './percentile.ts';

const jobs = Number(process.argv[2] ?? 2_000);
const concurrency = Number(process.argv[3] ?? 1);

async function measure(target: JobTarget, label: string): Promise<void> {
  const latencies: number[] = [];
  let next = 0;
  const started = performance.now();
  const worker = async () => {
    while (next < jobs) {
      const id = `${label}-${next++}`;
      const t = performance.now();
      const { accepted } = await addBulkExactly(target, [{ id, data: { id } }], 2_000);
      if (!accepted.has(id)) throw new Error(`${id} not accepted`);
      latencies.push(performance.now() - t);
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  const seconds = (performance.now() - started) / 1_000;
  latencies.sort((a, b) => a - b);
  console.log(
    `${label.padEnd(16)} p50 ${percentile(latencies, 50).toFixed(3)} ms  p99 ${percentile(latencies, 99).toFixed(3)} ms  ${(jobs / seconds).toFixed(0)} jobs/s`,
  );
}

const cluster = await ownRedisCluster({ masters: 3, replicas: 1 });
const redis = createProducerRedis(
  { url: 'redis://127.0.0.1:6379', commandTimeoutMs: 2_000, clusterNodes: cluster.seeds.split(',') },
  'bench-wait',
);
try {
  await whenReady(redis);
  const queue = createCommandQueue(redis, 'bench', 'orders');
  const base = { queue, jobName: 'place-order', jobOptions: { removeOnComplete: true } };
  console.log(`${jobs} jobs, ${concurrency} at a time, Redis Cluster 3 masters × 1 replica (local)`);
  await measure(base, 'warm-up');
  for (let round = 0; round < 2; round++) {
    await measure(base, `no-wait-${round}`);
    await measure({ ...base, replicaWait: { replicas: 1, timeoutMs: 1_000 } }, `wait-1-${round}`);
  }
  await queue.close();
} finally {
  redis.disconnect();
  await cluster.stop();
}
