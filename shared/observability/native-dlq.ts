import type { Admin } from 'kafkajs';
import { kafkaClientOptions, type KafkaConnection } from '../bus/kafka/connection.ts';
import type { BusReader } from './bus-lag.ts';

/**
 * The transports' own dead-letter places, besides the `dead_letters` table: BullMQ's `*-dead-letters`
 * queues, RabbitMQ's `<queue>.dlq`, SQS's `<prefix>-<group>-dlq` and Kafka's `<topic>.dlq`. The core
 * copies a dead letter there only after recording its row, but a broker also moves messages there by
 * itself (a RabbitMQ quorum queue's `x-delivery-limit`, an SQS redrive policy's `maxReceiveCount`),
 * and those have no row: no console or API shows them. `conveyor_native_dlq_messages` and the
 * Overview count them so that work never sits where no operator looks.
 */
export type NativeDlqTransport = 'bullmq' | 'kafka' | 'rabbitmq' | 'sqs';

/** A RabbitMQ queue named like the bus's dead-letter queues (`<queue>.dlq`, shared/bus/rabbitmq/topology.ts). */
export function isRabbitmqDlq(queue: string): boolean {
  return queue.endsWith('.dlq');
}

/** An SQS queue named like the bus's dead-letter queues (`<prefix>-<group>-dlq[.fifo]`, shared/bus/sqs/topology.ts). */
export function isSqsDlq(queue: string): boolean {
  return /-dlq(\.fifo)?$/.test(queue);
}

/** The dead-letter topic next to an events topic (`<topic>.dlq`, shared/bus/kafka-bus.ts); none for `.retry`/`.dlq` topics. */
export function kafkaDlqOf(topic: string): string | undefined {
  return topic.endsWith('.retry') || topic.endsWith('.dlq') ? undefined : `${topic}.dlq`;
}

/** Messages a Kafka topic retains: the sum over its partitions of high minus low watermark. */
export interface TopicSize {
  topic: string;
  messages: number;
}

export interface KafkaTopicSizeOptions extends KafkaConnection {
  /** Topics to measure; one not created yet is skipped. */
  topics: readonly string[];
  /** Per request. @defaultValue 2000 */
  requestTimeoutMs?: number;
}

/**
 * Retained messages of Kafka topics (kafkajs admin `fetchTopicOffsets`: high − low watermark per
 * partition) — for a dead-letter topic nobody consumes, how many dead letters it holds within its
 * retention. The admin client connects on the first read and again after any failure.
 */
export function createKafkaTopicSizeReader(options: KafkaTopicSizeOptions): BusReader<TopicSize> {
  let admin: Promise<Admin> | undefined;
  const timeout = options.requestTimeoutMs ?? 2_000;
  const connect = async (): Promise<Admin> => {
    const { Kafka, logLevel } = await import('kafkajs');
    const kafka = new Kafka({
      ...kafkaClientOptions({ ...options, clientId: `${options.clientId}-metrics` }),
      connectionTimeout: timeout,
      requestTimeout: timeout,
      retry: { retries: 0 },
      logLevel: logLevel.NOTHING,
    });
    const a = kafka.admin();
    await a.connect();
    return a;
  };
  return {
    async read() {
      admin ??= connect();
      try {
        const a = await admin;
        // Ask for the list first: a kafkajs client once asked about a missing topic keeps asking.
        const existing = new Set(await a.listTopics());
        const present = options.topics.filter((t) => existing.has(t));
        const marks = await Promise.all(present.map((t) => a.fetchTopicOffsets(t)));
        return present.map((topic, i) => ({
          topic,
          messages: (marks[i] ?? []).reduce((sum, p) => sum + Math.max(0, Number(p.high) - Number(p.low)), 0),
        }));
      } catch (err) {
        const failed = admin;
        admin = undefined;
        await failed?.then((a) => a.disconnect()).catch(() => undefined);
        throw err;
      }
    },
    async close() {
      const a = admin;
      admin = undefined;
      await a?.then((x) => x.disconnect()).catch(() => undefined);
    },
  };
}
