import { randomUUID } from 'node:crypto';
import { Kafka, logLevel, type Admin, type ConfigResourceTypes } from 'kafkajs';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { EventBus } from '../../shared/bus/event-bus.ts';
import { createKafkaBus, type KafkaBusConfig } from '../../shared/bus/kafka/bus.ts';
import { kafkaTopics } from '../../shared/bus/kafka/headers.ts';
import { describeKafkaTopics, KafkaTopologyMismatchError } from '../../shared/bus/kafka/topology.ts';
import type { DeadLetterSink } from '../../shared/dead-letters/dead-letter.ts';
import { placedEvent } from '../contract/contract-events.ts';
import { testConfig, testLogger } from '../support/env.ts';

// The topics the bus declares, on the machine's single broker (127.0.0.1:9092 unless KAFKA_BROKERS
// says otherwise): what it creates, and what it refuses to run on. Replication factor 3 itself is
// proven on a three-node cluster by test/chaos/kafka-cluster.test.ts.
const config = testConfig();
const brokers = config.bus.kafka.brokers;
// Topology only: nothing here consumes, so nothing is dead-lettered.
const noDeadLetters: DeadLetterSink = {
  record: () => Promise.reject(new Error('unexpected dead letter')),
};

describe('Kafka bus topology: replication settings', () => {
  let admin: Admin;
  const buses: EventBus[] = [];
  const created = new Set<string>();

  /** A bus on a fresh topic (or `topic`), with these replication settings. */
  function bus(settings: Partial<KafkaBusConfig> & { topic: string }): EventBus {
    created.add(settings.topic);
    const b = createKafkaBus(
      { logger: testLogger(), deadLetters: noDeadLetters },
      { ...config.bus.kafka, partitions: 2, maxAttempts: 3, backoffMs: 20, ...settings },
    );
    buses.push(b);
    return b;
  }
  const topicName = (label: string) => `${config.bus.kafka.topic}.${label}`;

  beforeAll(async () => {
    admin = new Kafka({ brokers: [...brokers], logLevel: logLevel.NOTHING }).admin();
    await admin.connect();
  });
  afterEach(async () => {
    await Promise.all(buses.splice(0).map((b) => b.close()));
  });
  afterAll(async () => {
    // Only those that exist: kafkajs retries deleting a missing topic for seconds.
    const existing = new Set(await admin.listTopics());
    const topics = [...created].flatMap((t) => Object.values(kafkaTopics(t))).filter((t) => existing.has(t));
    if (topics.length > 0) await admin.deleteTopics({ topics }).catch(() => undefined);
    await admin.disconnect();
  });

  it('creates events, retry and DLQ topics with min.insync.replicas set on each topic', async () => {
    const topic = topicName('isr');
    await bus({ topic, replicationFactor: 1, minInsyncReplicas: 1 }).start();
    const t = kafkaTopics(topic);
    const names = [t.events, t.retry, t.dlq];
    expect(await describeKafkaTopics(admin, names)).toEqual(
      names.map((name) => ({ topic: name, replicationFactor: 1, minInsyncReplicas: 1 })),
    );
    // Set on the topic, not inherited from the broker's default.
    const { resources } = await admin.describeConfigs({
      includeSynonyms: false,
      resources: names.map((name) => ({
        type: 2 as ConfigResourceTypes, // TOPIC
        name,
        configNames: ['min.insync.replicas'],
      })),
    });
    expect(resources.map((r) => r.configEntries[0]?.isDefault)).toEqual([false, false, false]);
  });

  it('refuses to start on existing topics replicated less than configured, naming each one', async () => {
    const topic = topicName('weaker');
    await bus({ topic }).start(); // the broker's default: one replica
    const stricter = bus({ topic, replicationFactor: 2, minInsyncReplicas: 2 });
    const err: unknown = await stricter.start().then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(KafkaTopologyMismatchError);
    const t = kafkaTopics(topic);
    const mismatches = (err as KafkaTopologyMismatchError).mismatches;
    for (const name of [t.events, t.retry, t.dlq]) {
      expect(mismatches).toContain(`${name} has replication factor 1, configured 2`);
      expect(mismatches).toContain(`${name} has min.insync.replicas=1, configured 2`);
    }
    expect((err as Error).message).toMatch(/replicated less than configured/);
    // Publishing through it fails the same way rather than writing with less durability than asked.
    await expect(stricter.publish([placedEvent(randomUUID())])).rejects.toThrow(KafkaTopologyMismatchError);
  });

  it('refuses min.insync.replicas above the replicas an existing topic has: every write would fail', async () => {
    const topic = topicName('unmeetable');
    await bus({ topic }).start();
    await expect(bus({ topic, minInsyncReplicas: 2 }).start()).rejects.toThrow(
      /min\.insync\.replicas=1, configured 2/,
    );
  });

  it('names the settings when the cluster cannot create the topics (too few brokers)', async () => {
    const { brokers: registered } = await admin.describeCluster();
    const topic = topicName('toomany');
    const rf = registered.length + 1;
    await expect(bus({ topic, replicationFactor: rf }).start()).rejects.toThrow(
      new RegExp(
        `could not create topics .*replication factor ${rf}.*Replication-factor is invalid.*the cluster has ${registered.length} broker`,
        's',
      ),
    );
  });

  it('rejects min.insync.replicas above the replication factor before connecting', () => {
    expect(() => bus({ topic: topicName('invalid'), replicationFactor: 2, minInsyncReplicas: 3 })).toThrow(
      /KAFKA_MIN_INSYNC_REPLICAS \(3\) is larger than KAFKA_REPLICATION_FACTOR \(2\)/,
    );
  });
});
