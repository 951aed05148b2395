import { kafkaClientOptions, type KafkaConnection } from '../bus/kafka/connection.ts';
import type * as SqsSdk from '@aws-sdk/client-sqs';
import type { SQSClient } from '@aws-sdk/client-sqs';
import type { Admin } from 'kafkajs';
import type { Channel, ChannelModel } from 'amqplib';

/** How far one consumer group is behind on one partition, in messages. */
export interface PartitionLag {
  group: string;
  topic: string;
  partition: number;
  lag: number;
}

/** Depth of one RabbitMQ queue as `queue.declare-ok` reports it. */
export interface RabbitQueueDepth {
  queue: string;
  /** Messages ready for delivery (unacknowledged deliveries are not counted by the broker here). */
  messages: number;
  consumers: number;
}

/** Approximate message counts of one SQS queue, as `GetQueueAttributes` reports them. */
export interface SqsQueueDepth {
  queue: string;
  /** `ApproximateNumberOfMessages`: available for retrieval — the backlog nobody holds. */
  visible: number;
  /** `ApproximateNumberOfMessagesNotVisible`: received, not yet deleted (in flight, or waiting out a retry backoff). */
  inFlight: number;
  /** `ApproximateNumberOfMessagesDelayed`: sent with a delay that has not passed. */
  delayed: number;
}

/** Something read on every scrape; keeps its connection between scrapes. */
export interface BusReader<T> {
  read(): Promise<T[]>;
  close(): Promise<void>;
}

export interface KafkaLagOptions extends KafkaConnection {
  /** Topics the groups consume (e.g. the events topic and its `.retry` topic); missing ones are skipped. */
  topics: readonly string[];
  groups: readonly string[];
  /** Per request; a scrape must not hang on a slow broker. @defaultValue 2000 */
  requestTimeoutMs?: number;
}

/**
 * A reader over a kafkajs admin client for scrapes: connects on the first read and again after any
 * failure (a scrape must not hang on a slow broker: `requestTimeoutMs` per request, no retries), and
 * hands `read` the `topics` that exist — ask for the list first: a kafkajs client once asked about a
 * missing topic keeps it in its metadata requests, and every later one fails.
 */
export function kafkaScrapeReader<T>(
  options: KafkaConnection & { topics: readonly string[]; requestTimeoutMs?: number | undefined },
  read: (admin: Admin, present: string[]) => Promise<T[]>,
): BusReader<T> {
  let admin: Promise<Admin> | undefined;
  const timeout = options.requestTimeoutMs ?? 2_000;
  const connect = async (): Promise<Admin> => {
    const { Kafka, logLevel } = await import('kafkajs');
    const kafka = new Kafka({
      // TLS and SASL as the bus uses them: a reader must reach the same cluster.
      ...kafkaClientOptions({ ...options, clientId: `${options.clientId}-metrics` }),
      connectionTimeout: timeout,
      requestTimeout: timeout,
      retry: { retries: 0 },
      // Scrape failures surface as conveyor_metrics_collector_up=0, not as log noise.
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
        const existing = new Set(await a.listTopics());
        return await read(
          a,
          options.topics.filter((t) => existing.has(t)),
        );
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

/**
 * Consumer lag per group and partition: the topic's high watermark minus the group's committed
 * offset (kafkajs admin `fetchTopicOffsets` + `fetchOffsets`). A partition the group never committed
 * counts from the low watermark: that is what a new consumer reading from the beginning must do.
 */
export function createKafkaLagReader(options: KafkaLagOptions): BusReader<PartitionLag> {
  return kafkaScrapeReader(options, async (a, present) => {
    const marks = await Promise.all(present.map((t) => a.fetchTopicOffsets(t)));
    const committed = await Promise.all(
      options.groups.map((groupId) => a.fetchOffsets({ groupId, topics: present })),
    );
    return options.groups.flatMap((group, g) =>
      present.flatMap((topic, t) => {
        const offsets = new Map(
          (committed[g]?.find((c) => c.topic === topic)?.partitions ?? []).map((p) => [
            p.partition,
            Number(p.offset),
          ]),
        );
        return (marks[t] ?? []).map((w) => {
          const done = offsets.get(w.partition) ?? -1;
          const from = done >= 0 ? done : Number(w.low);
          return { group, topic, partition: w.partition, lag: Math.max(0, Number(w.high) - from) };
        });
      }),
    );
  });
}

export interface RabbitmqDepthOptions {
  url: string;
  queues: readonly string[];
  /** Connect timeout. @defaultValue 2000 */
  timeoutMs?: number;
}

/**
 * Ready-message count and consumers of RabbitMQ queues (`checkQueue`, a passive declare). A queue
 * that does not exist yet is skipped; the broker closes the channel on that 404, so the next check
 * opens a fresh one. The connection is opened on the first read and again after it drops.
 */
export function createRabbitmqDepthReader(options: RabbitmqDepthOptions): BusReader<RabbitQueueDepth> {
  let model: Promise<ChannelModel> | undefined;
  let channel: Promise<Channel> | undefined;
  const connect = async (): Promise<ChannelModel> => {
    const { connect: amqpConnect } = await import('amqplib');
    const m = await amqpConnect(options.url, {
      timeout: options.timeoutMs ?? 2_000,
      clientProperties: { connection_name: 'conveyor-metrics' },
    });
    // An unhandled 'error' event would crash the process; the next scrape reconnects instead.
    m.on('error', () => undefined);
    m.on('close', () => {
      model = undefined;
      channel = undefined;
    });
    return m;
  };
  const openChannel = async (): Promise<Channel> => {
    model ??= connect();
    const ch = await (await model).createChannel();
    ch.on('error', () => undefined);
    return ch;
  };
  return {
    async read() {
      const out: RabbitQueueDepth[] = [];
      try {
        for (const queue of options.queues) {
          channel ??= openChannel();
          const ch = await channel;
          try {
            const ok = await ch.checkQueue(queue);
            out.push({ queue, messages: ok.messageCount, consumers: ok.consumerCount });
          } catch (err) {
            channel = undefined;
            if ((err as { code?: number }).code !== 404) throw err;
          }
        }
        return out;
      } catch (err) {
        const m = model;
        model = undefined;
        channel = undefined;
        await m?.then((x) => x.close()).catch(() => undefined);
        throw err;
      }
    },
    async close() {
      const m = model;
      model = undefined;
      channel = undefined;
      await m?.then((x) => x.close()).catch(() => undefined);
    },
  };
}

export interface SqsDepthOptions {
  /** SQS_ENDPOINT, SQS_REGION. */
  endpoint: string;
  region: string;
  /** Queue names (e.g. the projections queue and its DLQ: `sqsGroupQueues` in shared/bus/sqs/bus.ts). */
  queues: readonly string[];
  /** Per request; a scrape must not hang on a slow endpoint. @defaultValue 2000 */
  timeoutMs?: number;
}

/**
 * Approximate visible, in-flight and delayed messages of SQS queues (`GetQueueAttributes`; SQS's
 * counts lag by up to a minute). A queue that does not exist yet is skipped; queue URLs are looked up
 * once and again after a miss. The client is created on the first read (the SDK loads lazily).
 */
export function createSqsDepthReader(options: SqsDepthOptions): BusReader<SqsQueueDepth> {
  let sdk: Promise<{ sqs: typeof SqsSdk; client: SQSClient }> | undefined;
  const urls = new Map<string, string>();
  const timeout = options.timeoutMs ?? 2_000;
  const connect = async () => {
    const sqs = await import('@aws-sdk/client-sqs');
    const { createSqsClient } = await import('../bus/sqs/client.ts');
    const client = createSqsClient({
      endpoint: options.endpoint,
      region: options.region,
      requestTimeoutMs: timeout,
    });
    return { sqs, client };
  };
  const isMissing = (err: unknown) => (err as { name?: unknown }).name === 'QueueDoesNotExist';
  return {
    async read() {
      sdk ??= connect();
      const { sqs, client } = await sdk;
      const depths = await Promise.all(
        options.queues.map(async (queue): Promise<SqsQueueDepth | undefined> => {
          try {
            let url = urls.get(queue);
            if (!url) {
              url = (await client.send(new sqs.GetQueueUrlCommand({ QueueName: queue }))).QueueUrl;
              if (!url) return undefined;
              urls.set(queue, url);
            }
            const { Attributes: a = {} } = await client.send(
              new sqs.GetQueueAttributesCommand({
                QueueUrl: url,
                AttributeNames: [
                  'ApproximateNumberOfMessages',
                  'ApproximateNumberOfMessagesNotVisible',
                  'ApproximateNumberOfMessagesDelayed',
                ],
              }),
            );
            const n = (v: string | undefined) => Number(v ?? 0) || 0;
            return {
              queue,
              visible: n(a.ApproximateNumberOfMessages),
              inFlight: n(a.ApproximateNumberOfMessagesNotVisible),
              delayed: n(a.ApproximateNumberOfMessagesDelayed),
            };
          } catch (err) {
            urls.delete(queue);
            if (isMissing(err)) return undefined;
            throw err;
          }
        }),
      );
      return depths.filter((d): d is SqsQueueDepth => d !== undefined);
    },
    async close() {
      const s = sdk;
      sdk = undefined;
      await s?.then(({ client }) => client.destroy()).catch(() => undefined);
    },
  };
}
