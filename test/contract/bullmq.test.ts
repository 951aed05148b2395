import { randomUUID } from 'node:crypto';
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { describe, expect, it } from 'vitest';
import {
  bullmqGroupQueue,
  bullmqGroupsKey,
  createBullmqBus,
  EVENT_BATCH_JOB,
  EVENT_PACK_JOB,
  type BullmqEventJob,
} from '../../shared/bus/bullmq/bus.ts';
import { encodeEvent } from '../../shared/bus/codec.ts';
import { withCarrier } from '../../shared/observability/tracing/trace-context.ts';
import type { Config } from '../../shared/config/config.ts';
import { createPgDeadLetterSink, type DeadLetterSink } from '../../shared/dead-letters/dead-letter.ts';
import { createDeadLetterStore } from '../../shared/dead-letters/store.ts';
import { deadLetterId } from '../../shared/delivery/dead-letter.ts';
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
      snoozeMs: ctx.config.bus.snoozeMs,
      snoozeMaxMs: ctx.config.bus.snoozeMaxMs,
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

/** A bus on `config`'s isolated prefix for the BullMQ-only cases: 3 attempts, 20 ms backoff, `config`'s snoozes. */
function isolatedBus(config: Config, deadLetters: DeadLetterSink, concurrency = 5) {
  return createBullmqBus(
    { logger: testLogger(), deadLetters },
    {
      redisUrl: config.redis.url,
      queuePrefix: config.redis.queuePrefix,
      concurrency,
      maxAttempts: 3,
      backoffMs: 20,
      snoozeMs: config.bus.snoozeMs,
      snoozeMaxMs: config.bus.snoozeMaxMs,
      shutdownGraceMs: 2_000,
    },
  );
}

const wire = (e: EventEnvelope): BullmqEventJob => {
  const { body, headers } = encodeEvent(e);
  return { body: body.toString('utf8'), headers };
};

/**
 * An isolated bus (3 attempts, 20 ms backoff, 20–100 ms snoozes) with a recording subscriber of the
 * default group (queue `events`); `close` drops it all.
 */
async function openBus(then?: Parameters<typeof recorder>[0]) {
  const config = testConfig({
    BUS_MAX_ATTEMPTS: '3',
    BUS_BACKOFF_MS: '20',
    BUS_SNOOZE_MS: '20',
    BUS_SNOOZE_MAX_MS: '100',
  });
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
  const schema = config.database.schema;
  return {
    config,
    ctx,
    pool,
    bus,
    rec,
    store,
    deadLetters,
    /** The dead-letter id of an event of queue `events`: the one scheme, from the event id. */
    deadLetterIdOf: (eventId: string) =>
      deadLetterId({ transport: 'bullmq', origin: QueueNames.events, messageId: eventId }),
    add: (name: string, data: unknown, attempts = 3) =>
      withQueue(ctx, QueueNames.events, (q) => q.add(name, data as BullmqEventJob, { attempts })),
    /** A job of queue `events` and its state (`undefined`: no such job). */
    job: (id: string) =>
      withQueue(ctx, QueueNames.events, async (q) => {
        const job = await q.getJob(id);
        return job && { job, state: await job.getState() };
      }),
    counts: () => withQueue(ctx, QueueNames.events, (q) => q.getJobCounts()),
    nativeDeadLetters: () =>
      withQueue(ctx, QueueNames.eventsDeadLetters, (q) => q.getJobs(['waiting', 'completed', 'failed'])),
    /** Renames the case's `dead_letters` table away (a dead letter cannot be recorded) or back. */
    deadLetterTable: async (present: boolean) =>
      pool.query(
        present
          ? `ALTER TABLE "${schema}".dead_letters_away RENAME TO dead_letters`
          : `ALTER TABLE "${schema}".dead_letters RENAME TO dead_letters_away`,
      ),
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

describe('BullMQ bus: event batch jobs', () => {
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

  it('splits a failing event out of its batch job carrying its attempt: BullMQ’s attempts of the batch job do not count', async () => {
    const [ok, failing] = [placedEvent(), placedEvent()];
    const t = await openBus(async (e) => {
      if (e.eventId === failing.eventId) throw new Error('still failing');
    });
    try {
      // One BullMQ attempt: the old bus dead-lettered the failing event on its first delivery.
      await t.add(EVENT_BATCH_JOB, { events: [wire(ok), wire(failing)] }, 1);
      const [dl] = await t.deadLetters(1);
      expect(dl).toMatchObject({
        id: t.deadLetterIdOf(failing.eventId),
        payload: encodeEvent(failing).body,
        attempts: 3,
        error: 'still failing',
        subjectId: failing.key,
      });
      expect(t.rec.of(failing.eventId).map((r) => r.delivery.attempt)).toEqual([1, 2, 3]);
      expect(t.rec.of(ok.eventId).map((r) => r.delivery.attempt)).toEqual([1]);
      // The batch job and the split-out both completed, the split-out naming its dead letter.
      await eventually(async () => (await t.counts()).completed === 2, { what: 'both jobs completed' });
      expect(await t.counts()).toMatchObject({ completed: 2, failed: 0, delayed: 0, waiting: 0 });
      const splitOut = await withQueue(t.ctx, QueueNames.events, async (q) =>
        (await q.getJobs(['completed'])).find((j) => j.name !== EVENT_BATCH_JOB),
      );
      expect(splitOut?.returnvalue).toEqual({ deadLetterId: dl!.id });
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

describe('BullMQ bus: event pack jobs (what a publish of several events adds)', () => {
  it('publishes several events as one pack job; a poison item is dead-lettered alone with the bytes and headers it was published with, a failing one is split out carrying its attempt, the rest applied once', async () => {
    const [good, failing, other] = [placedEvent(), placedEvent(), placedEvent()];
    // Valid for the relay (it publishes whatever is in the outbox), not for a consumer: no uuid.
    const poison = { ...placedEvent(), eventId: `not-a-uuid-${randomUUID()}` };
    const carrier = { traceparent: '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01' };
    const t = await openBus(async (e) => {
      if (e.eventId === failing.eventId) throw new Error('still failing');
    });
    try {
      await t.bus.publish([withCarrier(good, carrier), poison, failing, other]);
      const names = await withQueue(t.ctx, QueueNames.events, async (q) =>
        (await q.getJobs(['waiting', 'active', 'completed', 'delayed'])).map((j) => j.name),
      );
      expect(names).toContain(EVENT_PACK_JOB);

      const letters = await t.deadLetters(2);
      const poisonLetter = letters.find((d) => d.headers['event-id'] === poison.eventId);
      expect(poisonLetter).toMatchObject({ payload: encodeEvent(poison).body, attempts: 1 });
      expect(poisonLetter?.headers).toEqual(encodeEvent(poison).headers);
      expect(poisonLetter?.error).toMatch(/not a valid event/);
      const failed = letters.find((d) => d.id === t.deadLetterIdOf(failing.eventId));
      expect(failed).toMatchObject({
        payload: encodeEvent(failing).body,
        headers: encodeEvent(failing).headers,
        attempts: 3,
        error: 'still failing',
        subjectId: failing.key,
      });
      expect(t.rec.of(failing.eventId).map((r) => r.delivery.attempt)).toEqual([1, 2, 3]);
      expect([good, other].map((e) => t.rec.of(e.eventId).map((r) => r.delivery.attempt))).toEqual([
        [1],
        [1],
      ]);
      // The trace the relay tagged an event with reaches its handler from inside a pack.
      expect(t.rec.of(good.eventId)[0]?.delivery.trace).toEqual(carrier);
      expect(t.rec.of(other.eventId)[0]?.delivery.trace).toBeUndefined();
      await eventually(async () => (await t.counts()).completed === 2, {
        what: 'pack and split-out completed',
      });
      expect(await t.counts()).toMatchObject({ completed: 2, failed: 0, delayed: 0, waiting: 0 });
    } finally {
      await t.close();
    }
  });

  it('redrives a dead letter that holds a whole pack (read by a consumer that predates packs) as a pack, traces kept', async () => {
    const events = [placedEvent(), placedEvent()];
    const carrier = { traceparent: '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01' };
    const t = await openBus();
    try {
      // A pack under another job name is what a pre-pack consumer dead-letters ("empty message").
      await t.add('order.placed', { packed: events, traces: [carrier, null] });
      const [dl] = await t.deadLetters(1);
      expect(JSON.parse(dl!.payload.toString('utf8'))).toEqual({ packed: events, traces: [carrier, null] });
      await t.bus.redrive(dl!);
      await eventually(() => events.every((e) => t.rec.of(e.eventId).length === 1), {
        what: 'the redriven pack’s events',
      });
      expect(events.map((e) => t.rec.of(e.eventId)[0]?.delivery.trace)).toEqual([carrier, undefined]);
    } finally {
      await t.close();
    }
  });

  it('publishes batch jobs, which every consumer reads, when told to (`manyFormat: batch`, a rolling deploy)', async () => {
    const events = [placedEvent(), placedEvent()];
    const t = await openBus();
    const config = t.config;
    const publisher = createBullmqBus(
      { logger: testLogger(), deadLetters: createPgDeadLetterSink(t.pool) },
      {
        redisUrl: config.redis.url,
        queuePrefix: config.redis.queuePrefix,
        concurrency: 1,
        maxAttempts: 3,
        backoffMs: 20,
        shutdownGraceMs: 2_000,
        manyFormat: 'batch',
      },
    );
    try {
      await publisher.start();
      await publisher.publish(events);
      await eventually(() => events.every((e) => t.rec.of(e.eventId).length === 1), {
        what: 'the batch’s events',
      });
      const names = await withQueue(t.ctx, QueueNames.events, async (q) =>
        (await q.getJobs(['completed'])).map((j) => j.name),
      );
      expect(names).toEqual([EVENT_BATCH_JOB]);
    } finally {
      await publisher.close();
      await t.close();
    }
  });
});

describe('BullMQ bus: an adapter of the delivery core', () => {
  const refused = () =>
    Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:5432'), { code: 'ECONNREFUSED' });

  it('parks an event whose dead letter cannot be recorded — not failed, no native copy — and dead-letters it once when it can; the job completes', async () => {
    const event = placedEvent();
    const t = await openBus(async (e) => {
      if (e.eventId === event.eventId) throw new Error('projection refused');
    });
    await t.deadLetterTable(false);
    let away = true;
    try {
      await t.bus.publish([event]); // one event: job id = event id
      // Attempts 1–3, then parked and delivered again — still on its last attempt — twice.
      await eventually(() => t.rec.of(event.eventId).length >= 5, {
        timeoutMs: 30_000,
        what: 'the parked event delivered again',
      });
      const parked = await t.job(event.eventId);
      expect(['delayed', 'waiting', 'active']).toContain(parked?.state);
      expect((await t.counts()).failed).toBe(0);
      expect(await t.nativeDeadLetters()).toEqual([]);

      await t.deadLetterTable(true);
      away = false;
      const [dl] = await t.deadLetters(1);
      expect(dl).toMatchObject({
        id: t.deadLetterIdOf(event.eventId),
        attempts: 3,
        // The row's error starts with the handler's; the table may come back between the full record's
        // failure and its fallback, which records the row alone and says so after it.
        error: expect.stringMatching(/^projection refused/),
        subjectId: event.key,
      });
      const done = await eventually(
        async () => {
          const j = await t.job(event.eventId);
          return j?.state === 'completed' && j;
        },
        { what: 'the dead-lettered job completed' },
      );
      expect(done.job.returnvalue).toEqual({ deadLetterId: dl!.id });
      const attempts = t.rec.of(event.eventId).map((r) => r.delivery.attempt);
      expect(attempts.slice(0, 3)).toEqual([1, 2, 3]);
      expect(attempts.slice(3).every((a) => a === 3)).toBe(true);
      // Exactly once: one row, one native copy, nothing failed.
      expect(await t.store.list({ limit: 10 })).toHaveLength(1);
      expect((await t.nativeDeadLetters()).map((j) => j.id)).toEqual([dl!.id]);
      expect((await t.counts()).failed).toBe(0);
    } finally {
      if (away) await t.deadLetterTable(true);
      await t.close();
    }
  });

  it('rides out a PostgreSQL outage the projector reports (ECONNREFUSED), single events and batch items alike: attempt 1 every time, no dead letter', async () => {
    const [single, inBatch, neighbour] = [placedEvent(), placedEvent(), placedEvent()];
    const down = new Set([single.eventId, inBatch.eventId]);
    const deliveries = new Map<string, number>();
    const t = await openBus(async (e) => {
      const n = (deliveries.get(e.eventId) ?? 0) + 1;
      deliveries.set(e.eventId, n);
      if (down.has(e.eventId) && n <= 8) throw refused();
    });
    try {
      await t.bus.publish([single]);
      await t.bus.publish([inBatch, neighbour]);
      // Done once the three jobs (single, batch, the batch item split out) completed.
      await eventually(async () => (await t.counts()).completed === 3, {
        timeoutMs: 45_000,
        what: 'every job completed',
      });
      for (const e of [single, inBatch]) {
        expect(t.rec.of(e.eventId).map((r) => r.delivery.attempt)).toEqual(
          Array.from({ length: 9 }, () => 1),
        );
      }
      expect(t.rec.of(neighbour.eventId).map((r) => r.delivery.attempt)).toEqual([1]);
      expect(await t.store.list({ limit: 10 })).toEqual([]);
      expect(await t.nativeDeadLetters()).toEqual([]);
      expect(await t.counts()).toMatchObject({ completed: 3, failed: 0, delayed: 0, waiting: 0 });
    } finally {
      await t.close();
    }
  });

  it('dead-letters a job BullMQ failed by itself for stalling, through the core: sent back and parked while the record fails, never left in failed', async () => {
    const [parkedEvent, recordedEvent] = [placedEvent(), placedEvent()];
    const t = await openBus();
    /**
     * What BullMQ's stalled check does to a job stalled more than `maxStalledCount` times: marks it to
     * fail (`defa`) and moves it to wait; the worker that takes it next fails it without running it.
     */
    const stalledTooOften = (e: EventEnvelope) =>
      withQueue(t.ctx, QueueNames.events, async (q) => {
        const job = await q.add(e.type, wire(e), { jobId: e.eventId, delay: 60_000, attempts: 3 });
        await (await q.client).hset(q.toKey(e.eventId), 'defa', 'job stalled more than allowable limit');
        await job.promote();
      });
    await t.deadLetterTable(false);
    let away = true;
    try {
      await stalledTooOften(parkedEvent);
      // Failed, sent back marked, and parked by the processor (a dead letter cannot be recorded).
      await eventually(
        async () => {
          const j = await t.job(parkedEvent.eventId);
          const progress = j?.job.progress as { deadLetter?: { error: string }; snoozes?: number };
          return j?.state === 'delayed' && (progress.snoozes ?? 0) >= 2 && progress;
        },
        { timeoutMs: 30_000, what: 'the stalled job parked twice' },
      );
      expect((await t.counts()).failed).toBe(0);
      expect(await t.nativeDeadLetters()).toEqual([]);

      await t.deadLetterTable(true);
      away = false;
      const [parked] = await t.deadLetters(1);
      expect(parked).toMatchObject({ id: t.deadLetterIdOf(parkedEvent.eventId), attempts: 1 });
      expect(parked?.error).toMatch(/stalled more than allowable limit/);
      const done = await eventually(
        async () => {
          const j = await t.job(parkedEvent.eventId);
          return j?.state === 'completed' && j;
        },
        { what: 'the parked job dead-lettered and completed' },
      );
      expect(done.job.returnvalue).toEqual({ deadLetterId: parked!.id });

      // Recorded at once: the `failed` listener records it and removes the job from `failed`.
      await stalledTooOften(recordedEvent);
      await t.deadLetters(2);
      await eventually(async () => (await t.job(recordedEvent.eventId)) === undefined, {
        what: 'the failed job removed once dead-lettered',
      });
      expect((await t.store.get(t.deadLetterIdOf(recordedEvent.eventId)))?.error).toMatch(/stalled/);
      expect((await t.nativeDeadLetters()).map((j) => j.id).sort()).toEqual(
        [parked!.id, t.deadLetterIdOf(recordedEvent.eventId)].sort(),
      );
      expect((await t.counts()).failed).toBe(0);
      // Neither was run: a job that stalls its consumers is not handed to the handler again.
      expect(t.rec.received).toEqual([]);
    } finally {
      if (away) await t.deadLetterTable(true);
      await t.close();
    }
  });

  it('redrives under a new job id (the completed original is kept), and a second failure updates the same dead letter', async () => {
    let failing = true;
    const event = placedEvent();
    const t = await openBus(async () => {
      if (failing) throw new Error('still down');
    });
    try {
      await t.bus.publish([event]);
      const [dl] = await t.deadLetters(1);
      expect(dl!.id).toBe(t.deadLetterIdOf(event.eventId));
      await eventually(async () => (await t.job(event.eventId))?.state === 'completed', {
        what: 'the original job completed',
      });
      // Claimed as the API does, then sent back: fails again, same row, new error.
      expect(await t.store.resolve(dl!.id, 'redriven', 'test')).toBe(true);
      await t.bus.redrive({ ...dl!, redriveCount: 1 });
      await eventually(() => t.rec.of(event.eventId).length >= 6, { what: 'the redriven copy failing' });
      const again = await eventually(
        async () => {
          const row = await t.store.get(dl!.id);
          return row?.status === 'pending' && row;
        },
        { what: 'the same dead letter pending again' },
      );
      expect(again).toMatchObject({ attempts: 3, error: 'still down' });
      expect(await t.store.list({ limit: 10 })).toHaveLength(1);

      failing = false;
      expect(await t.store.resolve(dl!.id, 'redriven', 'test')).toBe(true);
      await t.bus.redrive({ ...again, redriveCount: 2 });
      await eventually(() => t.rec.of(event.eventId).length >= 7, { what: 'the second redrive' });
      expect(t.rec.of(event.eventId).map((r) => r.delivery.attempt)).toEqual([1, 2, 3, 1, 2, 3, 1]);
      expect((await t.counts()).failed).toBe(0);
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
