import { Redis, type RedisOptions } from 'ioredis';

export type { Redis } from 'ioredis';

export interface RedisConnectionOptions {
  url: string;
  commandTimeoutMs: number;
}

/**
 * Connection for producers and request paths (API): fail fast. Commands do not wait in an offline
 * queue while Redis is down, so the API answers 503 at once instead of a late or false 202.
 */
export function createProducerRedis(options: RedisConnectionOptions, name = 'conveyor-producer'): Redis {
  const redis = new Redis(options.url, {
    connectionName: name,
    enableOfflineQueue: false,
    maxRetriesPerRequest: 1,
    commandTimeout: options.commandTimeoutMs,
    connectTimeout: 5_000,
    // The brief's retry strategy: keep reconnecting, backing off up to 2 s.
    retryStrategy: (times) => Math.min(times * 50, 2_000),
  } satisfies RedisOptions);
  redis.on('error', () => undefined); // surfaced through failing commands and /readyz
  return redis;
}

/**
 * Connection for BullMQ workers: blocking commands, never time out a command, retry forever so a
 * Redis restart pauses work instead of crashing the worker.
 */
export function createWorkerRedis(options: RedisConnectionOptions, name = 'conveyor-worker'): Redis {
  const redis = new Redis(options.url, {
    connectionName: name,
    maxRetriesPerRequest: null,
    enableReadyCheck: true,
    connectTimeout: 5_000,
    retryStrategy: (times) => Math.min(times * 50, 2_000),
  } satisfies RedisOptions);
  redis.on('error', () => undefined);
  return redis;
}

/**
 * Whether Redis persists every write to its append-only file. `INFO persistence` rather than
 * `CONFIG GET`: managed services (ElastiCache, Memorystore) often disable CONFIG but answer INFO.
 */
export async function aofEnabled(redis: Redis): Promise<boolean> {
  const info = await redis.info('persistence');
  return /^aof_enabled:1\r?$/m.test(info);
}

/** BullMQ loses jobs when Redis evicts keys: only `noeviction` is safe. */
export async function checkNoEviction(redis: Redis): Promise<string> {
  const reply = (await redis.config('GET', 'maxmemory-policy')) as string[];
  return reply[1] ?? 'unknown';
}
