import { Redis } from 'ioredis';

/**
 * The subscription groups a publish fans out to. Kept outside SQS on purpose: `ListQueues` is
 * eventually consistent (a queue created a moment ago may be missing from it) and lists every queue
 * the account has under a prefix, so a publish right after a `subscribe` could miss the new group.
 * Redis — which every Conveyor deployment runs for BullMQ, with AOF — gives read-your-writes: once
 * `register` resolved, every later `groups()` of any process includes the group.
 */
export interface GroupRegistry {
  /** Adds `group`; idempotent. */
  register(group: string): Promise<void>;
  /** Every registered group (the default group need not be: publishes always include it). */
  groups(): Promise<string[]>;
  /**
   * Removes `group`: publishes that read the registry afterwards no longer send to its queue. Whether
   * it was registered. Part of retiring a group (shared/bus/retire-group.ts), which then deletes its queues.
   */
  unregister(group: string): Promise<boolean>;
  close(): Promise<void>;
}

export interface RedisGroupRegistryOptions {
  url: string;
  /** The Redis set holding the group names. */
  key: string;
  /** Per command: a publish fails (and the outbox retries) rather than hang on a lost Redis. @defaultValue 2_000 */
  commandTimeoutMs?: number;
}

/**
 * The Redis set `<QUEUE_PREFIX>:sqs-event-groups:<queue prefix>` of the groups whose queues publishes
 * fill. A group stays registered after its consumers stop, so its queue keeps what is published while
 * none runs (a durable subscription). To retire one: `npm run groups:retire -- <group>`
 * (shared/bus/retire-group.ts: unregisters it, then deletes its two queues).
 */
export function sqsGroupsKey(redisPrefix: string, queuePrefix: string, fifo: boolean): string {
  return `${redisPrefix}:sqs-event-groups:${queuePrefix}${fifo ? '.fifo' : ''}`;
}

/** A {@link GroupRegistry} in a Redis set; connects on first use. */
export function createRedisGroupRegistry(options: RedisGroupRegistryOptions): GroupRegistry {
  let redis: Redis | undefined;
  const connection = () =>
    (redis ??= (() => {
      const r = new Redis(options.url, {
        connectionName: 'conveyor-sqs-groups',
        maxRetriesPerRequest: 1,
        commandTimeout: options.commandTimeoutMs ?? 2_000,
        connectTimeout: 5_000,
        retryStrategy: (times) => Math.min(times * 50, 2_000),
      });
      r.on('error', () => undefined); // surfaced through the failing command
      return r;
    })());
  return {
    async register(group) {
      await connection().sadd(options.key, group);
    },
    async groups() {
      return connection().smembers(options.key);
    },
    async unregister(group) {
      return (await connection().srem(options.key, group)) > 0;
    },
    async close() {
      const r = redis;
      redis = undefined;
      if (r) await r.quit().catch(() => r.disconnect());
    },
  };
}
