import { randomUUID } from 'node:crypto';
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { describe, expect, it } from 'vitest';
import {
  bullmqGroupQueue,
  bullmqGroupsKey,
  createBullmqBus,
  EVENT_BATCH_JOB,
  type BullmqEventJob,
} from '../../shared/bus/bullmq-bus.ts';
import { encodeEvent } from '../../shared/bus/codec.ts';
import type { Config } from '../../shared/config/config.ts';
import { createPgDeadLetterSink, type DeadLetterSink } from '../../shared/dead-letters/dead-letter.ts';
import { createDeadLetterStore } from '../../shared/dead-letters/store.ts';
import type { EventEnvelope } from '../../shared/domain/events.ts';
import { QueueNames } from '../../shared/queue/names.ts';
import { PROJECTOR_CONSUMER } from '../../workers/projections/projector.ts';
import { dropSchema, eventually, migratedPool, testConfig, testLogger } from '../support/env.ts';
import { describeBusContract, SECOND_GROUP, type BusContractContext } from './bus-contract.ts';
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
      for (const name of [QueueNames.events, bullmqGroupQueue(SECOND_GROUP), QueueNames.eventsDeadLetters]) {
        await withQueue(ctx, name, (q) => q.obliterate({ force: true }));
      }
      await withQueue(ctx, QueueNames.events, async (q) =>
        (await q.client).del(bullmqGroupsKey(ctx.config.redis.queuePrefix)),
      );
    },
  },
);

/** A bus on `config`'s isolated prefix for the BullMQ-only cases: 3 attempts, 20 ms backoff. */
function isolatedBus(config: Config, deadLetters: DeadLetterSink, concurrency = 5) {
  return createBullmqBus(
    { logger: testLogger(), deadLetters },
    {
      redisUrl: config.redis.url,
      queuePrefix: config.redis.queuePrefix,
      concurrency,
      maxAttempts: 3,
      backoffMs: 20,
      shutdownGraceMs: 2_000,
    },
  );
}

describe('BullMQ bus: event batch jobs', () => {
  const wire = (e: EventEnvelope): BullmqEventJob => {
    const { body, headers } = encodeEvent(e);
    return { body: body.toString('utf8'), headers };
  };

  /** An isolated bus (3 attempts, 20 ms backoff) with a recording subscriber; `close` drops it all. */
  async function openBus(then?: Parameters<typeof recorder>[0]) {
    const config = testConfig({ BUS_MAX_ATTEMPTS: '3', BUS_BACKOFF_MS: '20' });
    const pool = await migratedPool(config);
    const ctx = { config } as BusContractContext;
    const bus = isolatedBus(config, createPgDeadLetterSink(pool));
    await bus.start();
    const rec = recorder(then);
    const sub = await bus.subscribe(PROJECTOR_CONSUMER, rec.handler);
    const store = createDeadLetterStore(pool);
    const deadLetters = (n: number) =>
      eventually(
        async () => {
          const all = await store.list({ limit: 20 });
          return all.length >= n && all;
        },
        { what: `${n} dead letter(s)` },
      );
    return {
      bus,
      rec,
      deadLetters,
      add: (name: string, data: unknown, attempts = 3) =>
        withQueue(ctx, QueueNames.events, (q) => q.add(name, data as BullmqEventJob, { attempts })),
      async close() {
        await sub.close();
        await bus.close();
        for (const name of [QueueNames.events, QueueNames.eventsDeadLetters]) {
          await withQueue(ctx, name, (q) => q.obliterate({ force: true }));
        }
        await dropSchema(pool, config.database.schema);
        await pool.end();
      },
    };
  }

  it('dead-letters a poison item of a batch at once with its bytes, applies the rest, and dead-letters a malformed batch job', async () => {
    const t = await openBus();
    try {
      const good = [placedEvent(), placedEvent()];
      const poison: BullmqEventJob = { body: 'not json {', headers: { 'event-id': randomUUID() } };
      await t.add(EVENT_BATCH_JOB, { events: [wire(good[0]!), poison, wire(good[1]!)] });
      await t.add(EVENT_BATCH_JOB, { events: 'nope' });

      const letters = await t.deadLetters(2);
      const poisonLetter = letters.find((d) => d.headers['event-id'] === poison.headers['event-id']);
      expect(poisonLetter?.payload.toString('utf8')).toBe('not json {');
      expect(poisonLetter?.error).toMatch(/not valid JSON/);
      expect(letters.find((d) => d.error.includes('without an events array'))?.payload.toString('utf8')).toBe(
        JSON.stringify({ events: 'nope' }),
      );
      // The good events were delivered once each, not retried because of their poison neighbour.
      await eventually(() => good.every((e) => t.rec.of(e.eventId).length === 1), {
        what: 'the good events',
      });
      expect(good.map((e) => t.rec.of(e.eventId).map((r) => r.delivery.attempt))).toEqual([[1], [1]]);
    } finally {
      await t.close();
    }
  });

  it('on a batch job’s last attempt, dead-letters each failing event itself instead of re-enqueueing it', async () => {
    const [ok, failing] = [placedEvent(), placedEvent()];
    const t = await openBus(async (e) => {
      if (e.eventId === failing.eventId) throw new Error('still failing');
    });
    try {
      await t.add(EVENT_BATCH_JOB, { events: [wire(ok), wire(failing)] }, 1);
      const [dl] = await t.deadLetters(1);
      expect(dl).toMatchObject({ payload: encodeEvent(failing).body, attempts: 1, error: 'still failing' });
      expect(t.rec.of(failing.eventId)).toHaveLength(1);
      expect(t.rec.of(ok.eventId)).toHaveLength(1);
    } finally {
      await t.close();
    }
  });

  it('redrives a dead letter that holds a whole batch (read by a consumer that predates batches) as a batch', async () => {
    const events = [placedEvent(), placedEvent()];
    const t = await openBus();
    try {
      // A batch under another job name is what a pre-batch consumer dead-letters ("empty message").
      await t.add('order.placed', { events: events.map(wire) });
      const [dl] = await t.deadLetters(1);
      expect(JSON.parse(dl!.payload.toString('utf8'))).toEqual({ events: events.map(wire) });
      await t.bus.redrive(dl!);
      await eventually(() => events.every((e) => t.rec.of(e.eventId).length === 1), {
        what: 'the redriven batch’s events',
      });
    } finally {
      await t.close();
    }
  });
});

describe('BullMQ bus: subscription groups', () => {
  it('fans a publish out to `events` and `events.<group>` for groups registered by other processes, from registration on', async () => {
    const config = testConfig({ BUS_MAX_ATTEMPTS: '3', BUS_BACKOFF_MS: '20' });
    const pool = await migratedPool(config);
    const ctx = { config } as BusContractContext;
    const newBus = () => isolatedBus(config, createPgDeadLetterSink(pool));
    // The relay's process publishes and never subscribes; the audit consumer runs elsewhere.
    const [publisher, consumer] = [newBus(), newBus()];
    const auditQueue = bullmqGroupQueue(SECOND_GROUP);
    try {
      await publisher.start();
      await consumer.start();
      const early = placedEvent();
      await publisher.publish([early]); // no group registered yet: `events` only

      let broken = true;
      const [ok, failing] = [placedEvent(), placedEvent()];
      const audit = recorder(async (e) => {
        if (broken && e.eventId === failing.eventId) throw new Error('audit store is down');
      });
      const sub = await consumer.subscribe(SECOND_GROUP, audit.handler);
      await publisher.publish([ok, failing]);
      await publisher.publish([ok, failing]); // the relay's retry of the same batch: same job ids

      const store = createDeadLetterStore(pool);
      const [dl] = await eventually(
        async () => {
          const all = await store.list({ limit: 10 });
          return all.length > 0 && all;
        },
        { what: 'the audit group’s dead letter' },
      );
      expect(dl).toMatchObject({
        origin: auditQueue,
        transport: 'bullmq',
        payload: encodeEvent(failing).body,
      });
      expect(dl!.id.startsWith(`bullmq-${auditQueue}-`)).toBe(true);
      expect(audit.of(ok.eventId)).toHaveLength(1);
      expect(audit.of(early.eventId)).toEqual([]);
      await withQueue(ctx, auditQueue, async (q) => expect(await q.getJob(early.eventId)).toBeUndefined());
      // `events` holds what the (absent) default group is owed: the early event and one batch job.
      const waitingInEvents = () =>
        withQueue(ctx, QueueNames.events, async (q) => (await q.getJobCounts('waiting')).waiting);
      expect(await waitingInEvents()).toBe(2);

      broken = false;
      await publisher.redrive(dl!); // from a process that never subscribed to the group
      await eventually(() => audit.of(failing.eventId).length > 3, { what: 'the redriven event' });
      expect(audit.of(failing.eventId).at(-1)?.delivery.attempt).toBe(1);
      expect(await waitingInEvents()).toBe(2); // the redrive went to `events.audit` alone
      await sub.close();
    } finally {
      await consumer.close();
      await publisher.close();
      for (const name of [QueueNames.events, auditQueue, QueueNames.eventsDeadLetters]) {
        await withQueue(ctx, name, (q) => q.obliterate({ force: true }));
      }
      await withQueue(ctx, QueueNames.events, async (q) =>
        (await q.client).del(bullmqGroupsKey(config.redis.queuePrefix)),
      );
      await dropSchema(pool, config.database.schema);
      await pool.end();
    }
  });

  it('refuses a group name that cannot name a queue or a dead-letter id', async () => {
    const config = testConfig();
    const bus = isolatedBus(config, { record: async () => undefined }, 1);
    try {
      await expect(bus.subscribe('audit:v2', async () => undefined)).rejects.toThrow(
        /invalid subscription group/,
      );
    } finally {
      await bus.close();
    }
  });
});
