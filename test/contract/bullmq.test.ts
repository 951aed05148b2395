import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { createBullmqBus, type BullmqEventJob } from '../../shared/bus/bullmq-bus.ts';
import { QueueNames } from '../../shared/queue/names.ts';
import { describeBusContract, type BusContractContext } from './bus-contract.ts';

/** Runs one raw-client operation on a queue of the context's prefix, then closes what it opened. */
async function withQueue<T>(ctx: BusContractContext, name: string, fn: (q: Queue) => Promise<T>): Promise<T> {
  const connection = new Redis(ctx.config.redis.url, { maxRetriesPerRequest: null });
  const queue = new Queue(name, { connection, prefix: ctx.config.redis.queuePrefix });
  try {
    return await fn(queue);
  } finally {
    await queue.close();
    connection.disconnect();
  }
}

describeBusContract(
  'bullmq',
  async (ctx) =>
    createBullmqBus(ctx, {
      redisUrl: ctx.config.redis.url,
      queuePrefix: ctx.config.redis.queuePrefix,
      concurrency: 10,
      maxAttempts: ctx.maxAttempts,
      backoffMs: ctx.backoffMs,
      shutdownGraceMs: 2_000,
    }),
  {
    // Concurrent jobs finish in any order; the projector does not depend on order.
    ordersPerKey: false,
    // Job id = event id: a re-published event whose job is still kept is not enqueued again.
    dedupesRepublished: true,
    async publishRaw(ctx, body, headers) {
      const data: BullmqEventJob = { body: body.toString('utf8'), headers };
      await withQueue(ctx, QueueNames.events, (q) => q.add('raw', data, { attempts: ctx.maxAttempts }));
    },
    async transportDeadLetters(ctx) {
      const jobs = await withQueue(ctx, QueueNames.eventsDeadLetters, (q) =>
        q.getJobs(['waiting', 'completed', 'failed']),
      );
      return jobs.map((job) => {
        const data = job.data as BullmqEventJob;
        return { payload: Buffer.from(data.body, 'utf8'), headers: data.headers };
      });
    },
    async cleanup(ctx) {
      for (const name of [QueueNames.events, QueueNames.eventsDeadLetters]) {
        await withQueue(ctx, name, (q) => q.obliterate({ force: true }));
      }
    },
  },
);
