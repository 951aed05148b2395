import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { Redis } from 'ioredis';
import { Kafka, logLevel } from 'kafkajs';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { EventBus } from '../../shared/bus/event-bus.ts';
import { createKafkaBus } from '../../shared/bus/kafka/bus.ts';
import { kafkaTopics } from '../../shared/bus/kafka/headers.ts';
import { transactionalSlotKeys } from '../../shared/bus/kafka/transactional-slot.ts';
import type { Config } from '../../shared/config/config.ts';
import type { Pool } from '../../shared/db/pool.ts';
import { createPgDeadLetterSink } from '../../shared/dead-letters/dead-letter.ts';
import type { EventEnvelope } from '../../shared/domain/events.ts';
import { placedEvent } from '../contract/contract-events.ts';
import {
  dropSchema,
  eventually,
  migratedPool,
  TEST_REDIS_URL,
  testConfig,
  testLogger,
  uniqueId,
} from '../support/env.ts';
import { logRecords, startProcess, type Proc } from '../support/processes.ts';

/** Short, so the test is quick; the default is 10 s. */
const LEASE_MS = 3_000;
/** A swept slot is fenced within a lease plus one renewal period; the rest is Kafka and the fetch. */
const LAG_BOUND_MS = Math.ceil((LEASE_MS * 4) / 3) + 4_000;

const ROOT = new URL('../../', import.meta.url);
const src = (path: string) => JSON.stringify(new URL(path, ROOT).href);

/**
 * Relay A, a separate process: leases a slot like a relay, begins a transaction, sends one event in it
 * and never commits — then waits to be killed. Its lease keeps renewing until then.
 */
function relayScript(): string {
  const kafkajs = JSON.stringify(pathToFileURL(createRequire(import.meta.url).resolve('kafkajs')).href);
  return `
import kafkajs from ${kafkajs};
import { encodeEvent } from ${src('shared/bus/codec.ts')};
import { createTransactionalSlotLease } from ${src('shared/bus/kafka/transactional-slot.ts')};
import { createLogger } from ${src('shared/observability/logger.ts')};
const env = process.env;
const logger = createLogger({ level: 'info', service: 'relay-a' });
const lease = createTransactionalSlotLease({
  base: env.A_BASE, redisUrl: env.A_REDIS_URL, redisPrefix: env.A_PREFIX, leaseMs: Number(env.A_LEASE_MS),
  logger, fence: async () => undefined, onLost: () => undefined,
});
const transactionalId = await lease.acquire();
const kafka = new kafkajs.Kafka({ clientId: 'relay-a', brokers: [env.A_BROKER], logLevel: kafkajs.logLevel.NOTHING });
const producer = kafka.producer({ transactionalId, idempotent: true, maxInFlightRequests: 1 });
await producer.connect();
const tx = await producer.transaction();
const event = JSON.parse(env.A_EVENT);
const { body, headers } = encodeEvent(event);
await tx.send({ topic: env.A_TOPIC, acks: -1, messages: [{ key: event.key, value: body, headers }] });
logger.info({ transactionalId }, 'transaction open');
setInterval(() => undefined, 60_000);
`;
}

// A relay killed inside a Kafka transaction leaves it open: read-committed consumers stop at it
// until it ends. Only a producer with the same transactional id ends it at once (InitProducerId
// fences and aborts); otherwise the broker does after transaction.timeout.ms (kafkajs: 60 s). With
// per-pod ids a replacement pod never reuses the id. With leased slots the slot comes back.
describe('a transactional relay killed with kill -9 mid-transaction', () => {
  let config: Config;
  let pool: Pool;
  let base: string;
  let dir: string;
  let redis: Redis;
  let relayA: Proc | undefined;
  const buses: EventBus[] = [];

  beforeEach(async () => {
    relayA = undefined;
    config = testConfig();
    pool = await migratedPool(config);
    base = uniqueId('txslot');
    dir = mkdtempSync(join(tmpdir(), 'kafka-txn-'));
    redis = new Redis(TEST_REDIS_URL);
    // One partition: the dead relay's open transaction and the next relay's events share it.
    const admin = new Kafka({ brokers: [...config.bus.kafka.brokers], logLevel: logLevel.NOTHING }).admin();
    await admin.connect();
    const t = kafkaTopics(config.bus.kafka.topic);
    await admin.createTopics({
      topics: [t.events, t.retry, t.dlq].map((topic) => ({ topic, numPartitions: 1 })),
    });
    await admin.disconnect();
  });

  afterEach(async () => {
    await relayA?.kill('SIGKILL');
    for (const bus of buses.splice(0)) await bus.close();
    const admin = new Kafka({ brokers: [...config.bus.kafka.brokers], logLevel: logLevel.NOTHING }).admin();
    await admin.connect();
    const t = kafkaTopics(config.bus.kafka.topic);
    await admin.deleteTopics({ topics: [t.events, t.retry, t.dlq] }).catch(() => undefined);
    await admin.deleteGroups([config.bus.kafka.consumer.groupId]).catch(() => undefined);
    await admin.disconnect();
    const keys = await redis.keys(`${config.redis.queuePrefix}:kafka-txn:*`);
    if (keys.length > 0) await redis.del(...keys);
    redis.disconnect();
    rmSync(dir, { recursive: true, force: true });
    await dropSchema(pool, config.database.schema);
    await pool.end();
  });

  /** Relay B: the Kafka bus as the outbox relay and the projections run it, with leased slots. */
  function relayBus(): EventBus {
    const bus = createKafkaBus(
      { logger: testLogger(), deadLetters: createPgDeadLetterSink(pool) },
      {
        ...config.bus.kafka,
        partitions: 1,
        maxAttempts: 3,
        backoffMs: 20,
        consumer: { ...config.bus.kafka.consumer, sessionTimeout: 6_000, maxWaitTimeMs: 100 },
        redisUrl: TEST_REDIS_URL,
        redisPrefix: config.redis.queuePrefix,
        producer: { transactionalId: base, transactionalLeaseMs: LEASE_MS },
        shutdownGraceMs: 1_000,
      },
    );
    buses.push(bus);
    return bus;
  }

  async function startRelayA(event: EventEnvelope): Promise<string> {
    const entry = join(dir, 'relay-a.mts');
    writeFileSync(entry, relayScript());
    relayA = startProcess(entry, {
      A_BASE: base,
      A_REDIS_URL: TEST_REDIS_URL,
      A_PREFIX: config.redis.queuePrefix,
      A_LEASE_MS: String(LEASE_MS),
      A_BROKER: config.bus.kafka.brokers[0]!,
      A_TOPIC: config.bus.kafka.topic,
      A_EVENT: JSON.stringify(event),
    });
    const a = relayA;
    const open = await eventually(
      () => {
        if (a.child.exitCode !== null) throw new Error(`relay A exited:\n${a.lines.slice(-20).join('\n')}`);
        return logRecords(a).find((l) => l.msg === 'transaction open');
      },
      { timeoutMs: 30_000, what: 'relay A to open its transaction' },
    );
    return String(open.transactionalId);
  }

  it(
    'readers get the next relay’s events within the lease, not the transaction timeout',
    { timeout: 120_000 },
    async () => {
      const key = uniqueId('order');
      const fromA = placedEvent(key);
      const fromB = placedEvent(key);
      expect(await startRelayA(fromA)).toBe(`${base}-0`);

      // The replacement starts while A still lives (a rolling update's surge pod) and consumes.
      const bus = relayBus();
      await bus.start();
      const seen = new Map<string, number>();
      await bus.subscribe('projections', async (e) => {
        if (!seen.has(e.eventId)) seen.set(e.eventId, Date.now());
      });

      await relayA!.kill('SIGKILL');
      const killedAt = Date.now();
      await bus.publish([fromB]);

      const readAt = await eventually(() => seen.get(fromB.eventId), {
        timeoutMs: 30_000,
        intervalMs: 20,
        what: "the consumer to read relay B's event (stuck behind relay A's open transaction?)",
      });
      const lag = readAt - killedAt;
      console.log(
        `projection lag after kill -9 of a transactional relay: ${lag} ms (lease ${LEASE_MS} ms, bound ${LAG_BOUND_MS} ms; kafkajs transaction timeout 60000 ms)`,
      );
      expect(lag).toBeLessThan(LAG_BOUND_MS);
      // A's transaction was aborted, not committed: its event is never read.
      expect(seen.has(fromA.eventId)).toBe(false);
      // The dead relay's slot was fenced and forgotten; B keeps its own.
      const keys = transactionalSlotKeys(config.redis.queuePrefix, base);
      await eventually(async () => (await redis.smembers(keys.inUse)).join(',') === '1', {
        what: 'only B’s slot in use',
      });
    },
  );

  it(
    'a relay that starts after the lease expired takes the dead relay’s slot and fences it',
    { timeout: 120_000 },
    async () => {
      const key = uniqueId('order');
      const fromA = placedEvent(key);
      const fromB = placedEvent(key);
      expect(await startRelayA(fromA)).toBe(`${base}-0`);
      await relayA!.kill('SIGKILL');
      const killedAt = Date.now();
      const keys = transactionalSlotKeys(config.redis.queuePrefix, base);
      await eventually(async () => (await redis.exists(keys.slot(0))) === 0, {
        timeoutMs: LEASE_MS * 3,
        what: "relay A's lease to expire",
      });

      const bus = relayBus();
      await bus.start();
      const seen = new Map<string, number>();
      await bus.subscribe('projections', async (e) => {
        if (!seen.has(e.eventId)) seen.set(e.eventId, Date.now());
      });
      await bus.publish([fromB]);
      const readAt = await eventually(() => seen.get(fromB.eventId), {
        timeoutMs: 30_000,
        intervalMs: 20,
        what: "the consumer to read relay B's event",
      });
      console.log(
        `projection lag after kill -9, replacement started after the lease: ${readAt - killedAt} ms`,
      );
      expect(seen.has(fromA.eventId)).toBe(false);
      expect(await redis.get(keys.slot(0))).not.toBeNull(); // B holds slot 0 itself
      expect(await redis.smembers(keys.inUse)).toEqual(['0']);

      // A clean close forgets the slot: nothing left for a sweep to fence.
      await buses.pop()!.close();
      expect(await redis.exists(keys.slot(0))).toBe(0);
      expect(await redis.smembers(keys.inUse)).toEqual([]);
    },
  );
});
