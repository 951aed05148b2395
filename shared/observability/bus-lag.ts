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

/** Something read on every scrape; keeps its connection between scrapes. */
export interface BusReader<T> {
  read(): Promise<T[]>;
  close(): Promise<void>;
}

export interface KafkaLagOptions {
  brokers: readonly string[];
  clientId: string;
  /** Topics the groups consume (e.g. the events topic and its `.retry` topic); missing ones are skipped. */
  topics: readonly string[];
  groups: readonly string[];
  /** Per request; a scrape must not hang on a slow broker. @defaultValue 2000 */
  requestTimeoutMs?: number;
}

/**
 * Consumer lag per group and partition: the topic's high watermark minus the group's committed
 * offset (kafkajs admin `fetchTopicOffsets` + `fetchOffsets`). A partition the group never committed
 * counts from the low watermark: that is what a new consumer reading from the beginning must do.
 * The admin client connects on the first read and again after any failure.
 */
export function createKafkaLagReader(options: KafkaLagOptions): BusReader<PartitionLag> {
  let admin: Promise<Admin> | undefined;
  const timeout = options.requestTimeoutMs ?? 2_000;
  const connect = async (): Promise<Admin> => {
    const { Kafka, logLevel } = await import('kafkajs');
    const kafka = new Kafka({
      clientId: `${options.clientId}-metrics`,
      brokers: [...options.brokers],
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
        // A topic not created yet is skipped. Ask for the list first: a kafkajs client that was once
        // asked about a missing topic keeps it in its metadata requests, and every later one fails.
        const existing = new Set(await a.listTopics());
        const present = options.topics.filter((t) => existing.has(t));
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
