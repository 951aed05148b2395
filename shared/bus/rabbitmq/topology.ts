import type { Channel, ChannelModel } from 'amqplib';

/** Quorum queues (RabbitMQ ≥ 3.8) are replicated and count redeliveries; classic is the fallback. */
export type QueueType = 'quorum' | 'classic';

export interface TopologyConfig {
  /** Durable topic exchange every event is published to (routing key = event type). */
  exchange: string;
  /** Work queue of {@link TopologyConfig.defaultGroup}; other groups get `<exchange>.<group>`. */
  queue: string;
  defaultGroup: string;
  maxAttempts: number;
  backoffMs: number;
  maxBackoffMs: number;
}

export interface RetryQueue {
  name: string;
  ttlMs: number;
}

/** The queues of one consumer group. */
export interface GroupTopology {
  group: string;
  /** Work queue, bound to the exchange with `#`. */
  queue: string;
  /** `<queue>.dlq`, bound to the dead-letter exchange with routing key `<queue>`. */
  dlq: string;
  /** Delay queues, shortest first; each dead-letters expired messages back to `queue`. */
  retries: readonly RetryQueue[];
}

/** The direct exchange dead letters travel through (broker-side and ours). */
export function deadLetterExchange(exchange: string): string {
  return `${exchange}.dlx`;
}

/** Backoff before retry number `attempt` (1 = after the first failure): base·2^(n-1), capped. */
export function retryDelayMs(
  config: Pick<TopologyConfig, 'backoffMs' | 'maxBackoffMs'>,
  attempt: number,
): number {
  return Math.min(config.maxBackoffMs, config.backoffMs * 2 ** Math.max(0, attempt - 1));
}

/**
 * Names the queues of `group`. The retry queues carry their TTL in their name, so changing the
 * backoff declares new queues instead of failing on a mismatched `x-message-ttl` (406).
 */
export function groupTopology(config: TopologyConfig, group: string): GroupTopology {
  const queue = group === config.defaultGroup ? config.queue : `${config.exchange}.${group}`;
  const ttls = new Set<number>();
  for (let attempt = 1; attempt < config.maxAttempts; attempt++) ttls.add(retryDelayMs(config, attempt));
  return {
    group,
    queue,
    dlq: `${queue}.dlq`,
    retries: [...ttls].sort((a, b) => a - b).map((ttlMs) => ({ name: `${queue}.retry.${ttlMs}ms`, ttlMs })),
  };
}

/** The delay queue a message goes to after its `attempt`-th failure. */
export function retryQueueFor(config: TopologyConfig, topology: GroupTopology, attempt: number): RetryQueue {
  const ttlMs = retryDelayMs(config, attempt);
  const queue = topology.retries.find((r) => r.ttlMs === ttlMs) ?? topology.retries.at(-1);
  if (!queue) throw new Error(`no retry queue for attempt ${attempt} of group ${topology.group}`);
  return queue;
}

/** Quorum when the broker supports it (RabbitMQ ≥ 3.8), else classic. */
export function detectQueueType(model: ChannelModel): QueueType {
  const version = String(model.connection.serverProperties.version ?? '');
  const [major = 0, minor = 0] = version.split('.').map((n) => Number.parseInt(n, 10));
  return major > 3 || (major === 3 && minor >= 8) ? 'quorum' : 'classic';
}

/** Declares the event exchange and the dead-letter exchange; idempotent. */
export async function declareExchanges(channel: Channel, exchange: string): Promise<void> {
  await channel.assertExchange(exchange, 'topic', { durable: true });
  await channel.assertExchange(deadLetterExchange(exchange), 'direct', { durable: true });
}

export interface GroupDeclareOptions {
  queueType: QueueType;
  /** Quorum only: deliveries without an ack (crashes, requeues) before the broker dead-letters. */
  deliveryLimit: number;
}

/**
 * Declares a group's work queue, DLQ and retry queues and binds them; idempotent. The work queue
 * dead-letters into `<queue>.dlq` through the DLX, so a quorum queue that hits `x-delivery-limit`
 * moves the message to the DLQ instead of dropping it; `at-least-once` dead-lettering (which needs
 * `reject-publish` overflow) keeps it even if the DLQ is briefly unavailable.
 */
export async function declareGroup(
  channel: Channel,
  exchange: string,
  topology: GroupTopology,
  options: GroupDeclareOptions,
): Promise<void> {
  const dlx = deadLetterExchange(exchange);
  const typed = options.queueType === 'quorum' ? { 'x-queue-type': 'quorum' } : {};
  await channel.assertQueue(topology.dlq, { durable: true, arguments: typed });
  await channel.bindQueue(topology.dlq, dlx, topology.queue);
  const deadLettering = { 'x-dead-letter-exchange': dlx, 'x-dead-letter-routing-key': topology.queue };
  await channel.assertQueue(topology.queue, {
    durable: true,
    arguments:
      options.queueType === 'quorum'
        ? {
            ...typed,
            ...deadLettering,
            'x-delivery-limit': options.deliveryLimit,
            'x-dead-letter-strategy': 'at-least-once',
            'x-overflow': 'reject-publish',
          }
        : deadLettering,
  });
  await channel.bindQueue(topology.queue, exchange, '#');
  for (const retry of topology.retries) {
    // Classic queues with a per-queue TTL: every message in one queue has the same delay, so the head
    // always expires first (per-message TTLs in one queue would block behind a longer one).
    await channel.assertQueue(retry.name, {
      durable: true,
      arguments: {
        'x-message-ttl': retry.ttlMs,
        'x-dead-letter-exchange': '',
        'x-dead-letter-routing-key': topology.queue,
      },
    });
  }
}

/** Deletes what {@link declareGroup} and {@link declareExchanges} created (tests, teardown). */
export async function deleteTopology(
  channel: Channel,
  exchange: string,
  groups: readonly GroupTopology[],
): Promise<void> {
  for (const g of groups) {
    for (const name of [g.queue, g.dlq, ...g.retries.map((r) => r.name)]) await channel.deleteQueue(name);
  }
  await channel.deleteExchange(exchange);
  await channel.deleteExchange(deadLetterExchange(exchange));
}
