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
  /** First snooze delay (the delivery policy's `snoozeMs`); doubles up to `snoozeMaxMs`. */
  snoozeMs: number;
  snoozeMaxMs: number;
}

/** A classic queue whose messages all wait `ttlMs`, then dead-letter back to the work queue. */
export interface DelayQueue {
  name: string;
  ttlMs: number;
}

/** The queues of one consumer group. */
export interface GroupTopology {
  group: string;
  /** Work queue, bound to the exchange with `#`. */
  queue: string;
  /** `<queue>.dlq`: the native dead letters, each copied there by the consumer after its row was recorded. */
  dlq: string;
  /**
   * `<queue>.undelivered`: where the broker dead-letters what the work queue gave up on by itself
   * (past `x-delivery-limit`). The consumer reads it and dead-letters every message through the
   * delivery core (row first, then `dlq`), so nothing reaches `dlq` without a row.
   */
  undelivered: string;
  /** Delay queues (retries, snoozes, parks), shortest first; see {@link delayQueueFor}. */
  delays: readonly DelayQueue[];
}

/** The direct exchange the work queue's own dead letters travel through (to `undelivered`). */
export function deadLetterExchange(exchange: string): string {
  return `${exchange}.dlx`;
}

/** Backoff ceiling before retry number `attempt` (1 = after the first failure): base·2^(n-1), capped. */
export function retryDelayMs(
  config: Pick<TopologyConfig, 'backoffMs' | 'maxBackoffMs'>,
  attempt: number,
): number {
  return Math.min(config.maxBackoffMs, config.backoffMs * 2 ** Math.max(0, attempt - 1));
}

/**
 * The delays the group's delay queues hold: the delivery policy's backoff ceilings — every retry
 * ceiling (base·2^(n-1), capped, for attempts 1..maxAttempts-1) and every snooze ceiling
 * (snoozeMs·2^(n-1) up to snoozeMaxMs). The core's delays are these ceilings with jitter below them,
 * so the tier at or above a delay is the delay's own ceiling.
 */
function delayTiers(config: TopologyConfig): number[] {
  const ttls = new Set<number>();
  for (let attempt = 1; attempt < config.maxAttempts; attempt++) ttls.add(retryDelayMs(config, attempt));
  const snooze = { backoffMs: config.snoozeMs, maxBackoffMs: config.snoozeMaxMs };
  for (let n = 1; n <= 32; n++) {
    const ttl = retryDelayMs(snooze, n);
    ttls.add(ttl);
    if (ttl >= config.snoozeMaxMs) break;
  }
  return [...ttls].filter((t) => t > 0).sort((a, b) => a - b);
}

/**
 * Names the queues of `group`. The delay queues carry their TTL in their name (`<queue>.retry.<ttl>ms`,
 * the name they had when they held retries only), so changing a backoff declares new queues instead
 * of failing on a mismatched `x-message-ttl` (406).
 */
export function groupTopology(config: TopologyConfig, group: string): GroupTopology {
  const queue = group === config.defaultGroup ? config.queue : `${config.exchange}.${group}`;
  return {
    group,
    queue,
    dlq: `${queue}.dlq`,
    undelivered: `${queue}.undelivered`,
    delays: delayTiers(config).map((ttlMs) => ({ name: `${queue}.retry.${ttlMs}ms`, ttlMs })),
  };
}

/**
 * The delay queue for a hand-back of `delayMs`: the shortest tier at or above it (a retry or snooze
 * never comes back sooner than the core asked), else the longest (the consumer then holds the
 * message for the rest: see the `x-due-at` header). `undefined` for no delay: straight to the work queue.
 *
 * Why tiers and not a per-message `expiration`: RabbitMQ expires messages only at the head of a queue,
 * so in one queue of mixed delays a 30 s snooze would hold back every 20 ms retry behind it
 * (head-of-line blocking). One TTL per queue keeps each queue in expiry order, and the tiers are
 * exactly the policy's backoff ceilings, so the only cost is losing the jitter below a ceiling.
 */
export function delayQueueFor(topology: GroupTopology, delayMs: number): DelayQueue | undefined {
  if (delayMs <= 0) return undefined;
  const queue = topology.delays.find((d) => d.ttlMs >= delayMs) ?? topology.delays.at(-1);
  if (!queue) throw new Error(`no delay queue for ${delayMs} ms in group ${topology.group}`);
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
  /**
   * Quorum only: deliveries without an ack (crashes, lost connections) before the broker gives up on
   * a message. The consumer gives up itself, with a row, on the last delivery the broker allows; see
   * {@link declareGroup} for what happens when even that fails.
   */
  deliveryLimit: number;
}

/**
 * Declares a group's work queue, its delay queues, `dlq` and `undelivered`, and binds them; idempotent.
 *
 * The broker's own dead-lettering never reaches `dlq`. The work queue dead-letters through the DLX
 * with routing key `<queue>` (the work queue's arguments, unchanged since earlier versions: arguments
 * cannot change on a live queue, a re-declare with others is refused with 406), and that key is bound
 * to `undelivered`, which the consumer drains into the dead letters — row first. Earlier versions
 * bound the key to `dlq` itself; that binding is removed here. Raising `x-delivery-limit` above the
 * consumer's own limit would not do: every existing queue would refuse the new argument, and a
 * message whose consumer keeps losing its connection while dead-lettering it would still, one day,
 * pass any limit. Sending the broker's dead letters straight back to the work queue is no way either:
 * RabbitMQ drops a message that is dead-lettered round a cycle without a rejection in it.
 *
 * Quorum work queues use `at-least-once` dead-lettering (which needs `reject-publish` overflow), so
 * a message is kept until `undelivered` has it.
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
  await channel.assertQueue(topology.undelivered, { durable: true, arguments: typed });
  await channel.unbindQueue(topology.dlq, dlx, topology.queue); // an earlier version's binding
  await channel.bindQueue(topology.undelivered, dlx, topology.queue);
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
  for (const delay of topology.delays) {
    // Classic queues with a per-queue TTL: every message in one queue has the same delay, so the head
    // always expires first (see delayQueueFor).
    await channel.assertQueue(delay.name, {
      durable: true,
      arguments: {
        'x-message-ttl': delay.ttlMs,
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
    for (const name of [g.queue, g.dlq, g.undelivered, ...g.delays.map((d) => d.name)])
      await channel.deleteQueue(name);
  }
  await channel.deleteExchange(exchange);
  await channel.deleteExchange(deadLetterExchange(exchange));
}
