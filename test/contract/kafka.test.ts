import { randomUUID } from 'node:crypto';
import { Kafka, logLevel, Partitioners, type Admin, type Consumer, type Producer } from 'kafkajs';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { EventBus } from '../../shared/bus/event-bus.ts';
import { createKafkaBus } from '../../shared/bus/kafka/bus.ts';
import { kafkaTopics, readHeaders } from '../../shared/bus/kafka/headers.ts';
import { EventHeaders } from '../../shared/bus/codec.ts';
import type { Config } from '../../shared/config/config.ts';
import type { Pool } from '../../shared/db/pool.ts';
import { createPgDeadLetterSink } from '../../shared/dead-letters/dead-letter.ts';
import { createProjector } from '../../workers/projections/projector.ts';
import { dropSchema, eventually, migratedPool, testConfig, testLogger, uniqueId } from '../support/env.ts';
import {
  describeBusContract,
  placedEvent,
  SECOND_GROUP,
  type BusContractContext,
  type TransportDeadLetter,
} from './bus-contract.ts';

/** Raw kafkajs clients of one contract case: a plain producer and a reader of the DLQ topic. */
interface RawClients {
  admin: Admin;
  producer?: Producer;
  dlqReader?: {
    consumer: Consumer;
    groupId: string;
    seen: Map<number, bigint>;
    messages: TransportDeadLetter[];
  };
}

const clients = new WeakMap<BusContractContext, RawClients>();

function raw(ctx: BusContractContext): { kafka: Kafka; state: RawClients } {
  const kafka = new Kafka({
    clientId: 'contract-raw',
    brokers: [...ctx.config.bus.kafka.brokers],
    logLevel: logLevel.NOTHING,
  });
  let state = clients.get(ctx);
  if (!state) {
    state = { admin: kafka.admin() };
    clients.set(ctx, state);
  }
  return { kafka, state };
}

/** Starts (once) a consumer that keeps every DLQ message it reads, from the beginning. */
async function dlqReader(ctx: BusContractContext): Promise<NonNullable<RawClients['dlqReader']>> {
  const { kafka, state } = raw(ctx);
  if (state.dlqReader) return state.dlqReader;
  const groupId = uniqueId('dlq-reader');
  const consumer = kafka.consumer({ groupId, sessionTimeout: 6_000, maxWaitTimeInMs: 100 });
  const reader = {
    consumer,
    groupId,
    seen: new Map<number, bigint>(),
    messages: [] as TransportDeadLetter[],
  };
  state.dlqReader = reader;
  await consumer.connect();
  await consumer.subscribe({ topics: [kafkaTopics(ctx.config.bus.kafka.topic).dlq], fromBeginning: true });
  await consumer.run({
    eachMessage: async ({ partition, message }) => {
      reader.messages.push({
        payload: message.value ?? Buffer.alloc(0),
        headers: readHeaders(message.headers),
      });
      reader.seen.set(partition, BigInt(message.offset));
    },
  });
  return reader;
}

describeBusContract(
  'kafka',
  async (ctx) =>
    createKafkaBus(ctx, {
      ...ctx.config.bus.kafka,
      partitions: 3,
      maxAttempts: ctx.maxAttempts,
      backoffMs: ctx.backoffMs,
      snoozeMs: ctx.config.bus.snoozeMs,
      snoozeMaxMs: ctx.config.bus.snoozeMaxMs,
      consumer: { ...ctx.config.bus.kafka.consumer, sessionTimeout: 6_000, maxWaitTimeMs: 100 },
      shutdownGraceMs: 1_000,
    }),
  {
    ordersPerKey: true,
    closeAbandonsInFlight: true,
    async publishRaw(ctx, body, headers) {
      const { kafka, state } = raw(ctx);
      if (!state.producer) {
        state.producer = kafka.producer({
          createPartitioner: Partitioners.DefaultPartitioner,
          allowAutoTopicCreation: false,
        });
        await state.producer.connect();
      }
      await state.producer.send({
        topic: ctx.config.bus.kafka.topic,
        acks: -1,
        messages: [{ value: body, headers }],
      });
    },
    async transportDeadLetters(ctx) {
      const reader = await dlqReader(ctx);
      const { state } = raw(ctx);
      await state.admin.connect();
      // Everything written to the DLQ so far (its high watermarks), read before answering.
      const offsets = await state.admin.fetchTopicOffsets(kafkaTopics(ctx.config.bus.kafka.topic).dlq);
      await eventually(
        () =>
          offsets.every(
            (p) => BigInt(p.high) === 0n || (reader.seen.get(p.partition) ?? -1n) >= BigInt(p.high) - 1n,
          ),
        {
          what: 'the DLQ reader to catch up',
        },
      );
      return [...reader.messages];
    },
    async cleanup(ctx) {
      const { state } = raw(ctx);
      await state.dlqReader?.consumer.disconnect();
      await state.producer?.disconnect();
      const { topic, consumer } = ctx.config.bus.kafka;
      const t = kafkaTopics(topic);
      await state.admin.connect();
      await state.admin.deleteTopics({ topics: [t.events, t.retry, t.dlq] }).catch(() => undefined);
      const groups = [
        consumer.groupId,
        `${consumer.groupId}.${SECOND_GROUP}`,
        ...(state.dlqReader ? [state.dlqReader.groupId] : []),
      ];
      await state.admin.deleteGroups(groups).catch(() => undefined);
      await state.admin.disconnect();
      clients.delete(ctx);
    },
  },
);

describe('Kafka bus with a transactional producer', () => {
  let config: Config;
  let pool: Pool;
  let bus: EventBus | undefined;

  beforeEach(async () => {
    config = testConfig();
    pool = await migratedPool(config);
  });

  afterEach(async () => {
    await bus?.close();
    const admin = new Kafka({ brokers: [...config.bus.kafka.brokers], logLevel: logLevel.NOTHING }).admin();
    await admin.connect();
    const t = kafkaTopics(config.bus.kafka.topic);
    await admin.deleteTopics({ topics: [t.events, t.retry, t.dlq] }).catch(() => undefined);
    await admin.deleteGroups([config.bus.kafka.consumer.groupId]).catch(() => undefined);
    await admin.disconnect();
    await dropSchema(pool, config.database.schema);
    await pool.end();
  });

  it('publishes a batch in one transaction and parks retries through transactions too', async () => {
    bus = createKafkaBus(
      { logger: testLogger(), deadLetters: createPgDeadLetterSink(pool) },
      {
        ...config.bus.kafka,
        partitions: 3,
        maxAttempts: 3,
        backoffMs: 20,
        consumer: { ...config.bus.kafka.consumer, sessionTimeout: 6_000, maxWaitTimeMs: 100 },
        producer: { transactionalId: uniqueId('tx') },
        shutdownGraceMs: 1_000,
      },
    );
    await bus.start();
    const seen: { eventId: string; attempt: number }[] = [];
    const key = randomUUID();
    const events = Array.from({ length: 10 }, () => placedEvent(key));
    const flaky = events[3]?.eventId;
    await bus.subscribe('projections', async (e, d) => {
      seen.push({ eventId: e.eventId, attempt: d.attempt });
      if (e.eventId === flaky && d.attempt === 1) throw new Error('fails once');
    });
    await bus.publish(events);

    await eventually(() => seen.length >= events.length + 1, { what: 'every event and one retry' });
    const firsts = seen.filter((s) => s.attempt === 1).map((s) => s.eventId);
    expect(firsts).toEqual(events.map((e) => e.eventId));
    expect(seen.filter((s) => s.eventId === flaky).map((s) => s.attempt)).toEqual([1, 2]);

    // One transaction = the records plus one commit marker in the (single, same-key) partition;
    // an idempotent-only producer would leave the high watermark at exactly the record count.
    const admin = new Kafka({ brokers: [...config.bus.kafka.brokers], logLevel: logLevel.NOTHING }).admin();
    await admin.connect();
    try {
      const offsets = await admin.fetchTopicOffsets(config.bus.kafka.topic);
      expect(offsets.reduce((sum, p) => sum + Number(p.high), 0)).toBe(events.length + 1);
    } finally {
      await admin.disconnect();
    }
  });
});

describe('Kafka subscription as an adapter of the delivery core', () => {
  let config: Config;
  let pool: Pool;
  let admin: Admin;
  let bus: EventBus | undefined;
  const MAX_ATTEMPTS = 3;

  beforeEach(async () => {
    config = testConfig({ BUS_SNOOZE_MS: '20', BUS_SNOOZE_MAX_MS: '200' });
    pool = await migratedPool(config);
    admin = new Kafka({ brokers: [...config.bus.kafka.brokers], logLevel: logLevel.NOTHING }).admin();
    await admin.connect();
    // One partition: every event of a case is behind (or ahead of) every other.
    bus = createKafkaBus(
      { logger: testLogger(), deadLetters: createPgDeadLetterSink(pool) },
      {
        ...config.bus.kafka,
        partitions: 1,
        maxAttempts: MAX_ATTEMPTS,
        backoffMs: 20,
        snoozeMs: config.bus.snoozeMs,
        snoozeMaxMs: config.bus.snoozeMaxMs,
        consumer: { ...config.bus.kafka.consumer, sessionTimeout: 6_000, maxWaitTimeMs: 100 },
        shutdownGraceMs: 1_000,
      },
    );
    await bus.start();
  });

  afterEach(async () => {
    await bus?.close();
    const t = kafkaTopics(config.bus.kafka.topic);
    await admin.deleteTopics({ topics: [t.events, t.retry, t.dlq] }).catch(() => undefined);
    await admin.deleteGroups([config.bus.kafka.consumer.groupId]).catch(() => undefined);
    await admin.disconnect();
    await dropSchema(pool, config.database.schema);
    await pool.end();
  });

  /** Records written to a topic of this case (fresh topics, no transactions: the high watermarks). */
  async function recordsIn(topic: 'retry' | 'dlq'): Promise<number> {
    const offsets = await admin.fetchTopicOffsets(kafkaTopics(config.bus.kafka.topic)[topic]);
    return offsets.reduce((sum, p) => sum + Number(p.high), 0);
  }

  /** Whether the group committed every record of `topic`: nothing there will be delivered again. */
  async function committedAll(topic: 'events' | 'retry'): Promise<boolean> {
    const name = kafkaTopics(config.bus.kafka.topic)[topic];
    const [high] = await admin.fetchTopicOffsets(name);
    const [group] = await admin.fetchOffsets({ groupId: config.bus.kafka.consumer.groupId, topics: [name] });
    return group?.partitions[0]?.offset === high?.high;
  }

  async function deadLetterRows(table = 'dead_letters') {
    const { rows } = await pool.query<{ id: string; event_id: string; attempts: number }>(
      `SELECT id, headers->>'${EventHeaders.eventId}' AS event_id, attempts FROM "${config.database.schema}".${table}`,
    );
    return rows;
  }

  it('holds the partition through a dependency outage: no attempt consumed, no retry copy, no dead letter', async () => {
    const projector = createProjector({ pool, logger: testLogger(), batchSize: 20, batchWaitMs: 5 });
    const outage = placedEvent();
    const sameKey = placedEvent(outage.key, 2_000); // behind it, same key: must wait for it
    const otherKey = placedEvent(undefined, 3_000); // behind it, another key: handled meanwhile
    const seen: { eventId: string; attempt: number }[] = [];
    let refused = 0;
    await bus!.subscribe('projections', async (e, d) => {
      seen.push({ eventId: e.eventId, attempt: d.attempt });
      if (e.eventId === outage.eventId && refused < 8) {
        refused++;
        throw Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:5432'), { code: 'ECONNREFUSED' });
      }
      await projector.handle(e, d);
    });
    await bus!.publish([outage, sameKey, otherKey]);

    await eventually(() => seen.some((s) => s.eventId === sameKey.eventId), {
      timeoutMs: 30_000,
      what: 'the event behind the snoozed one',
    });
    await eventually(() => committedAll('events'), { what: 'every offset committed' });
    await projector.drain();
    const of = (id: string) => seen.filter((s) => s.eventId === id);
    // Eight snoozes, then success: every delivery was the first attempt.
    expect(of(outage.eventId).map((s) => s.attempt)).toEqual(Array.from({ length: 9 }, () => 1));
    // Per-key order held: the same key's next event came only after the snoozed one succeeded.
    expect(seen.findIndex((s) => s.eventId === sameKey.eventId)).toBeGreaterThan(
      seen.findLastIndex((s) => s.eventId === outage.eventId),
    );
    expect(of(sameKey.eventId)).toEqual([{ eventId: sameKey.eventId, attempt: 1 }]);
    // Done behind the held offset while it was held: not handled again on the refetches.
    expect(of(otherKey.eventId)).toEqual([{ eventId: otherKey.eventId, attempt: 1 }]);
    const { rows } = await pool.query<{ n: number }>('SELECT count(*)::int AS n FROM projection_inbox');
    expect(rows).toEqual([{ n: 3 }]);
    expect(await recordsIn('retry')).toBe(0);
    expect(await recordsIn('dlq')).toBe(0);
    expect(await deadLetterRows()).toEqual([]);
  });

  it('parks a dead letter it cannot record: nothing on the DLQ topic until the row is written, then one of each', async () => {
    const schema = config.database.schema;
    const event = placedEvent();
    const attempts: number[] = [];
    await bus!.subscribe('projections', async (e, d) => {
      if (e.eventId !== event.eventId) return;
      attempts.push(d.attempt);
      throw new Error(`handler failed on attempt ${d.attempt}`);
    });
    await pool.query(`ALTER TABLE "${schema}".dead_letters RENAME TO dead_letters_away`);
    let away = true;
    try {
      await bus!.publish([event]);
      // The last attempt, then parked (same attempt) at least twice.
      await eventually(() => attempts.length >= MAX_ATTEMPTS + 2, {
        timeoutMs: 30_000,
        what: 'the parked event delivered again',
      });
      expect(attempts.slice(0, MAX_ATTEMPTS + 2)).toEqual([1, 2, 3, 3, 3]);
      expect(await recordsIn('dlq')).toBe(0);
      expect(await deadLetterRows('dead_letters_away')).toEqual([]);

      await pool.query(`ALTER TABLE "${schema}".dead_letters_away RENAME TO dead_letters`);
      away = false;
      // Recorded, copied and acknowledged: the retry topic's offsets are committed past it.
      await eventually(async () => (await recordsIn('dlq')) > 0 && committedAll('retry'), {
        what: 'the dead letter copied to the DLQ topic and committed',
      });
      const rows = await deadLetterRows();
      expect(rows).toEqual([{ id: expect.stringMatching(/^kafka-/), event_id: event.eventId, attempts: 3 }]);
      expect(rows[0]?.id).toContain(event.eventId);
      expect(await recordsIn('dlq')).toBe(1);
      expect(attempts.every((a, i) => a === Math.min(i + 1, MAX_ATTEMPTS))).toBe(true);
    } finally {
      if (away) await pool.query(`ALTER TABLE "${schema}".dead_letters_away RENAME TO dead_letters`);
    }
  });
});
