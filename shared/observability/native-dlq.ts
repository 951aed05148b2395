import type { KafkaConnection } from '../bus/kafka/connection.ts';
import { kafkaScrapeReader, type BusReader } from './bus-lag.ts';

/**
 * The transports' own dead-letter places, besides the `dead_letters` table: BullMQ's `*-dead-letters`
 * queues, RabbitMQ's `<queue>.dlq`, SQS's `<prefix>-<group>-dlq` and Kafka's `<topic>.dlq`. The core
 * copies a dead letter there only after recording its row; a broker's own move (an SQS redrive policy's
 * `maxReceiveCount`; a RabbitMQ quorum queue's `x-delivery-limit` now routes to `<queue>.undelivered`,
 * which the consumer records) is kept out of reach of the consumer's limits, but a copy from an older
 * release, or a purge forgotten, has no row: no console or API shows it. `conveyor_native_dlq_messages` and the
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

/** The dead-letter topic next to an events topic (`<topic>.dlq`, shared/bus/kafka/bus.ts); none for `.retry`/`.dlq` topics. */
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
 * retention.
 */
export function createKafkaTopicSizeReader(options: KafkaTopicSizeOptions): BusReader<TopicSize> {
  return kafkaScrapeReader(options, async (a, present) => {
    const marks = await Promise.all(present.map((t) => a.fetchTopicOffsets(t)));
    return present.map((topic, i) => ({
      topic,
      messages: (marks[i] ?? []).reduce((sum, p) => sum + Math.max(0, Number(p.high) - Number(p.low)), 0),
    }));
  });
}
