import { Queue, Worker } from 'bullmq';
import { Redis } from 'ioredis';
import { afterAll, describe, expect, it } from 'vitest';
import { commandJobOptions, trimCompleted } from '../../shared/queue/command-queue.ts';
import { TEST_REDIS_URL, eventually, uniqueId } from '../support/env.ts';

// The completed jobs' count cap, enforced by the command workers' periodic trim instead of in every
// completion's script (commandJobOptions keeps only the age).
describe('trimCompleted', () => {
  const redis = new Redis(TEST_REDIS_URL, { maxRetriesPerRequest: null });
  const opened: { close(): Promise<void> }[] = [];
  afterAll(async () => {
    for (const q of opened.reverse()) await q.close();
    redis.disconnect();
  });

  it('keeps the newest `max` completed jobs and removes the others, hashes included', async () => {
    const prefix = uniqueId('trim');
    const queue = new Queue('orders', { connection: redis, prefix });
    opened.push(queue);
    const opts = commandJobOptions({ attempts: 1, backoffMs: 10, keepCompletedSeconds: 3_600 });
    expect(opts.removeOnComplete).toEqual({ age: 3_600 });
    await queue.addBulk(
      Array.from({ length: 30 }, (_, i) => ({ name: 'j', data: { i }, opts: { ...opts, jobId: `j-${i}` } })),
    );
    const worker = new Worker('orders', async () => 'ok', {
      connection: redis.duplicate(),
      prefix,
      concurrency: 1,
    });
    opened.push(worker);
    await eventually(async () => (await queue.getCompletedCount()) === 30, { what: '30 jobs completed' });
    await worker.close();
    // The set's order: finish time, then id (Redis orders equal scores by member).
    const byAge = (await queue.getCompleted(0, -1))
      .map((j) => ({ id: j.id!, at: j.finishedOn! }))
      .sort((a, b) => a.at - b.at || (a.id < b.id ? -1 : 1))
      .map((j) => j.id);

    expect(await trimCompleted(queue, 100)).toBe(0);
    expect(await trimCompleted(queue, 10, 15)).toBe(15);
    expect(await trimCompleted(queue, 10)).toBe(5);
    expect(await queue.getCompletedCount()).toBe(10);
    // The oldest went, their hashes with them.
    const kept = (await queue.getCompleted(0, -1)).map((j) => j.id).sort();
    expect(kept).toEqual(byAge.slice(20).sort());
    expect(await redis.exists(queue.toKey(byAge[0]!))).toBe(0);
    expect(await redis.exists(queue.toKey(byAge[29]!))).toBe(1);
    await queue.obliterate({ force: true });
  });
});
