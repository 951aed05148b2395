import { randomUUID } from 'node:crypto';
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { describe, expect, it } from 'vitest';
import {
  createBullmqBus,
  EVENT_BATCH_JOB,
  type BullmqEventBatchJob,
  type BullmqEventJob,
} from '../../shared/bus/bullmq-bus.ts';
import { encodeEvent } from '../../shared/bus/codec.ts';
import { createPgDeadLetterSink } from '../../shared/dead-letters/dead-letter.ts';
import { createDeadLetterStore } from '../../shared/dead-letters/store.ts';
import type { EventEnvelope } from '../../shared/domain/events.ts';
import { QueueNames } from '../../shared/queue/names.ts';
import { PROJECTOR_CONSUMER } from '../../workers/projections/projector.ts';
import { dropSchema, eventually, migratedPool, testConfig, testLogger } from '../support/env.ts';
import { describeBusContract, type BusContractContext } from './bus-contract.ts';
import { placedEvent, recorder } from './contract-events.ts';

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

describe('BullMQ bus: event batch jobs', () => {
  it('dead-letters a poison item of a batch at once with its bytes, applies the rest, and dead-letters a malformed batch job', async () => {
    const config = testConfig({ BUS_MAX_ATTEMPTS: '3', BUS_BACKOFF_MS: '20' });
    const pool = await migratedPool(config);
    const ctx = { config } as BusContractContext;
    const bus = createBullmqBus(
      { logger: testLogger(), deadLetters: createPgDeadLetterSink(pool) },
      {
        redisUrl: config.redis.url,
        queuePrefix: config.redis.queuePrefix,
        concurrency: 5,
        maxAttempts: 3,
        backoffMs: 20,
        shutdownGraceMs: 2_000,
      },
    );
    try {
      await bus.start();
      const rec = recorder();
      const sub = await bus.subscribe(PROJECTOR_CONSUMER, rec.handler);
      const good = [placedEvent(), placedEvent()];
      const wire = (e: EventEnvelope): BullmqEventJob => {
        const { body, headers } = encodeEvent(e);
        return { body: body.toString('utf8'), headers };
      };
      const poison: BullmqEventJob = { body: 'not json {', headers: { 'event-id': randomUUID() } };
      const batch: BullmqEventBatchJob = { events: [wire(good[0]!), poison, wire(good[1]!)] };
      await withQueue(ctx, QueueNames.events, async (q) => {
        await q.add(EVENT_BATCH_JOB, batch, { attempts: 3 });
        await q.add(EVENT_BATCH_JOB, { events: 'nope' }, { attempts: 3 });
      });

      const store = createDeadLetterStore(pool);
      const letters = await eventually(
        async () => {
          const all = await store.list({ limit: 10 });
          return all.length >= 2 && all;
        },
        { what: 'both dead letters' },
      );
      const poisonLetter = letters.find((d) => d.headers['event-id'] === poison.headers['event-id']);
      expect(poisonLetter?.payload.toString('utf8')).toBe('not json {');
      expect(poisonLetter?.error).toMatch(/not valid JSON/);
      expect(letters.find((d) => d.error.includes('without an events array'))?.payload.toString('utf8')).toBe(
        JSON.stringify({ events: 'nope' }),
      );
      // The good events were delivered once each, not retried because of their poison neighbour.
      await eventually(() => good.every((e) => rec.of(e.eventId).length === 1), { what: 'the good events' });
      expect(good.map((e) => rec.of(e.eventId).map((r) => r.delivery.attempt))).toEqual([[1], [1]]);
      await sub.close();
    } finally {
      await bus.close();
      for (const name of [QueueNames.events, QueueNames.eventsDeadLetters]) {
        await withQueue(ctx, name, (q) => q.obliterate({ force: true }));
      }
      await dropSchema(pool, config.database.schema);
      await pool.end();
    }
  });
});
