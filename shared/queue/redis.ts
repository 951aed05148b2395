import { Cluster, Redis as IORedis, type RedisOptions } from 'ioredis';

export { Cluster } from 'ioredis';

/** A connection to one Redis server (a single Redis, or one node of a cluster). */
export type RedisNode = IORedis;

/**
 * What every Redis user takes: a connection to one Redis (`REDIS_URL`) or a Redis Cluster client
 * (`REDIS_CLUSTER_NODES`). Commands, pipelines, scripts and BullMQ work on both; what differs
 * (duplicating, reaching one node) goes through the helpers below.
 */
export type Redis = RedisNode | Cluster;

export interface RedisConnectionOptions {
  url: string;
  commandTimeoutMs: number;
  /** Redis Cluster seed nodes (`host:port`); when non-empty, `url` only lends its credentials and TLS. */
  clusterNodes?: readonly string[] | undefined;
}

const retryStrategy = (times: number) => Math.min(times * 50, 2_000);

/** Whether `client` talks to a Redis Cluster. */
export function isCluster(client: Redis): client is Cluster {
  return client instanceof Cluster;
}

/** `host:port` → a startup node. */
function seedNode(hostPort: string): { host: string; port: number } {
  const at = hostPort.lastIndexOf(':');
  const port = Number(hostPort.slice(at + 1));
  if (at <= 0 || !Number.isInteger(port) || port <= 0) {
    throw new Error(`REDIS_CLUSTER_NODES: "${hostPort}" is not host:port`);
  }
  return { host: hostPort.slice(0, at).replace(/^\[(.*)\]$/, '$1'), port };
}

/** Credentials, database and TLS of `REDIS_URL`, which a cluster client's node connections reuse. */
function urlOptions(url: string): RedisOptions {
  const u = new URL(url);
  return {
    ...(u.username ? { username: decodeURIComponent(u.username) } : {}),
    ...(u.password ? { password: decodeURIComponent(u.password) } : {}),
    ...(u.protocol === 'rediss:' ? { tls: {} } : {}),
  };
}

/**
 * Cluster options of every connection: the cluster's own offline queue holds commands only while the
 * slot map is (re)loaded, so a command issued during a failover waits for the new map instead of failing
 * on a node that is gone.
 */
const CLUSTER_FAILOVER = {
  enableOfflineQueue: true,
  maxRedirections: 16,
  retryDelayOnFailover: 100,
  retryDelayOnClusterDown: 100,
} as const;

function open(options: RedisConnectionOptions, redisOptions: RedisOptions): Redis {
  const nodes = options.clusterNodes ?? [];
  const client: Redis =
    nodes.length > 0
      ? new Cluster(nodes.map(seedNode), {
          ...CLUSTER_FAILOVER,
          clusterRetryStrategy: retryStrategy,
          redisOptions: { ...urlOptions(options.url), ...redisOptions },
        })
      : new IORedis(options.url, redisOptions);
  client.on('error', () => undefined); // surfaced through failing commands and /readyz
  return client;
}

/**
 * Connection for producers and request paths (API): fail fast. Commands do not wait in an offline
 * queue while Redis is down, so the API answers 503 at once instead of a late or false 202.
 * A cluster client also refreshes its slot map on MOVED (a failover) and retries the command there.
 */
export function createProducerRedis(
  options: RedisConnectionOptions & { clusterNodes?: undefined },
  name?: string,
): RedisNode;
export function createProducerRedis(options: RedisConnectionOptions, name?: string): Redis;
export function createProducerRedis(options: RedisConnectionOptions, name = 'conveyor-producer'): Redis {
  return open(options, {
    connectionName: name,
    enableOfflineQueue: false,
    maxRetriesPerRequest: 1,
    commandTimeout: options.commandTimeoutMs,
    connectTimeout: 5_000,
    // The brief's retry strategy: keep reconnecting, backing off up to 2 s.
    retryStrategy,
  });
}

/**
 * Connection for BullMQ workers: blocking commands, never time out a command, retry forever so a
 * Redis restart (or a cluster failover) pauses work instead of crashing the worker.
 */
export function createWorkerRedis(
  options: RedisConnectionOptions & { clusterNodes?: undefined },
  name?: string,
): RedisNode;
export function createWorkerRedis(options: RedisConnectionOptions, name?: string): Redis;
export function createWorkerRedis(options: RedisConnectionOptions, name = 'conveyor-worker'): Redis {
  return open(options, {
    connectionName: name,
    maxRetriesPerRequest: null,
    enableReadyCheck: true,
    connectTimeout: 5_000,
    retryStrategy,
  });
}

/**
 * A second connection like `client` (same nodes and settings) with some settings changed — e.g. the
 * API's auto-pipelined request connection. ioredis' own `duplicate` differs between the two clients.
 * @example const requests = duplicateClient(rt.redis, { enableAutoPipelining: true, connectionName: 'api-requests' });
 */
export function duplicateClient(
  client: Redis,
  overrides: { enableAutoPipelining?: boolean; connectionName?: string },
): Redis {
  const copy: Redis = isCluster(client)
    ? client.duplicate(undefined, {
        ...(overrides.enableAutoPipelining !== undefined
          ? { enableAutoPipelining: overrides.enableAutoPipelining }
          : {}),
        redisOptions: {
          ...client.options.redisOptions,
          ...(overrides.connectionName ? { connectionName: overrides.connectionName } : {}),
        },
      })
    : client.duplicate(overrides);
  copy.on('error', () => undefined);
  return copy;
}

/** The client's connection name (`CLIENT SETNAME`), for naming derived connections. */
export function connectionNameOf(client: Redis): string | undefined {
  return isCluster(client) ? client.options.redisOptions?.connectionName : client.options.connectionName;
}

/** Resolves once `client` is ready (a cluster: slot map loaded, every master connected); rejects if it ends. */
export function whenReady(client: Redis): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    if (client.status === 'ready') return resolve();
    client.once('ready', () => resolve());
    client.once('end', () => reject(new Error('connection closed')));
  });
}

/** `host:port` of a node connection. */
export function nodeAddress(node: RedisNode): string {
  return `${node.options.host ?? '127.0.0.1'}:${node.options.port ?? 6379}`;
}

/** The connections to every master: the client itself for one Redis, one per master for a cluster. */
export function masters(client: Redis): RedisNode[] {
  return isCluster(client) ? client.nodes('master') : [client];
}

/**
 * The connection that holds `key`'s slot — the one a command on `key` was sent on, so a `WAIT` there
 * covers it. One Redis: the client itself.
 */
export function connectionForKey(client: Redis, key: string): RedisNode {
  if (!isCluster(client)) return client;
  const slot = clusterKeySlot(key);
  const owner = client.slots[slot]?.[0];
  const node = owner ? client.nodes('master').find((n) => nodeAddress(n) === owner) : undefined;
  if (!node) throw new Error(`no master known for slot ${slot} (cluster slot map not loaded)`);
  return node;
}

/**
 * Waits until every write this connection made so far is on `replicas` replicas (Redis `WAIT`), at
 * most `timeoutMs`. Resolves to how many acknowledged. WAIT blocks the connection meanwhile (every
 * command sent after it waits too): run it on a connection nothing else shares, as the API's
 * replica-wait writers do (`shared/http/enqueue.ts`), never on one that probes or metrics use.
 */
export async function waitForReplicas(
  connection: RedisNode,
  replicas: number,
  timeoutMs: number,
): Promise<number> {
  return Number(await connection.call('WAIT', replicas, timeoutMs));
}

/**
 * Whether Redis persists every write to its append-only file. `INFO persistence` rather than
 * `CONFIG GET`: managed services (ElastiCache, Memorystore) often disable CONFIG but answer INFO.
 */
export async function aofEnabled(redis: RedisNode): Promise<boolean> {
  const info = await redis.info('persistence');
  return /^aof_enabled:1\r?$/m.test(info);
}

/** BullMQ loses jobs when Redis evicts keys: only `noeviction` is safe. */
export async function checkNoEviction(redis: RedisNode): Promise<string> {
  const reply = (await redis.config('GET', 'maxmemory-policy')) as string[];
  return reply[1] ?? 'unknown';
}

// CRC16/XMODEM, the hash of Redis Cluster key slots (cluster spec, appendix A).
const CRC16_TABLE = (() => {
  const table = new Uint16Array(256);
  for (let i = 0; i < 256; i++) {
    let crc = i << 8;
    for (let b = 0; b < 8; b++) crc = crc & 0x8000 ? ((crc << 1) ^ 0x1021) & 0xffff : (crc << 1) & 0xffff;
    table[i] = crc;
  }
  return table;
})();

/** The cluster slot of `key` (0–16383), hash tags honoured: only the first non-empty `{…}` is hashed. */
export function clusterKeySlot(key: string): number {
  const open = key.indexOf('{');
  if (open !== -1) {
    const close = key.indexOf('}', open + 1);
    if (close > open + 1) key = key.slice(open + 1, close);
  }
  let crc = 0;
  for (const byte of Buffer.from(key, 'utf8'))
    crc = ((crc << 8) ^ CRC16_TABLE[((crc >> 8) ^ byte) & 0xff]!) & 0xffff;
  return crc % 16_384;
}
