import { serve } from '@hono/node-server';
import type { AddressInfo } from 'node:net';
import { createRuntimeRedriver } from '../shared/dead-letters/runtime-redriver.ts';
import { fairTarget } from '../shared/fairness/fair-queue.ts';
import { createDeadLetterStore } from '../shared/dead-letters/store.ts';
import { createPool } from '../shared/db/pool.ts';
import { createReadPools, replicaLag, type ReadPools } from '../shared/db/read-pools.ts';
import { createMetrics, type Metrics } from '../shared/observability/metrics.ts';
import { MODULES } from '../modules/registry.ts';
import { moduleSettings } from '../shared/modules/settings.ts';
import { commandJobOptions, createCommandQueue } from '../shared/queue/command-queue.ts';
import { connectionNameOf, duplicateClient, whenReady, type Redis } from '../shared/queue/redis.ts';
import { StartupError, type Runtime } from '../shared/runtime/bootstrap.ts';
import { withDeadline } from '../shared/runtime/deadline.ts';
import { DEV_KEY, knownScopes, parseApiKeys, type ApiKey } from '../shared/security/api-keys.ts';
import { createApiSessionStore } from '../shared/http/sessions.ts';
import { createApp } from './app.ts';
import { createIdempotencyStore } from '../shared/http/idempotency.ts';
import { replicaWriters, type ReplicaWriters } from '../shared/http/enqueue.ts';
import type { CommandTarget } from '../shared/http/modules.ts';
import { openOutcomeHub, type OutcomeHub } from './results/hub.ts';
import type { ResultsSettings } from './results/index.ts';

export interface ApiServer {
  port: number;
  /** This process's outcome hub (`Prefer: wait`, lifecycle streams): its listeners, its connection. */
  outcomes: OutcomeHub;
  close(): Promise<void>;
}

/** The results settings (`config.results`: RESULTS_*), with the caller's overrides on top. */
function resultsSettings(config: Runtime['config'], overrides: Partial<ResultsSettings> = {}) {
  return { ...config.results, ...overrides };
}

/**
 * The process's outcome hub: one subscriber connection on every module's steps channel (api/results),
 * closed with the API.
 */
async function openHub(rt: Runtime): Promise<OutcomeHub> {
  try {
    return await withDeadline(
      openOutcomeHub(rt.redis, {
        prefix: rt.config.redis.queuePrefix,
        modules: MODULES.map((m) => m.name),
        logger: rt.logger,
      }),
      15_000,
    );
  } catch (err) {
    throw new StartupError(`Redis is not reachable: ${(err as Error).message}`, { cause: err });
  }
}

/**
 * The request path's own Redis connection: the runtime's fail-fast producer settings plus ioredis
 * auto-pipelining, so the rate-limit, idempotency and enqueue commands that concurrent requests issue
 * in the same tick leave in one write. Its own connection keeps that batching off the runtime's
 * shared one (redriver, probes).
 */
async function openRequestRedis(rt: Runtime): Promise<Redis> {
  // Errors surface through failing commands (503) and /readyz.
  const redis = duplicateClient(rt.redis, {
    enableAutoPipelining: true,
    connectionName: `${connectionNameOf(rt.redis) ?? 'conveyor'}-requests`,
  });
  rt.lifecycle.defer('api redis', async () => {
    await redis.quit().catch(() => redis.disconnect());
  });
  try {
    await withDeadline(whenReady(redis), 15_000);
  } catch (err) {
    throw new StartupError(`Redis is not reachable: ${(err as Error).message}`, { cause: err });
  }
  return redis;
}

/** Connections per API process for writes that wait for replicas (see {@link openReplicaWriters}). */
const REPLICA_WAIT_CONNECTIONS = 4;

/**
 * REDIS_WAIT_REPLICAS > 0: the connections enqueues that wait for replicas write and `WAIT` on. WAIT
 * blocks its connection for up to REDIS_WAIT_TIMEOUT_MS; on the runtime's connection, which /readyz
 * pings and the queue metrics read, a replica missing made every API replica unready at once. These
 * are not probed: a broken one answers its writes 503, it does not take reads out of service.
 */
async function openReplicaWriters(rt: Runtime, metrics: Metrics): Promise<ReplicaWriters | undefined> {
  const { config, logger, redis, lifecycle } = rt;
  if (config.redis.waitReplicas <= 0) return undefined;
  const connectionName = `${connectionNameOf(redis) ?? 'conveyor'}-replica-waits`;
  const connections = Array.from({ length: REPLICA_WAIT_CONNECTIONS }, () =>
    duplicateClient(redis, { connectionName }),
  );
  const writers = replicaWriters(connections, (connection, name) => {
    const queue = createCommandQueue(connection, config.redis.queuePrefix, name);
    queue.on('error', (err) => logger.debug({ err, queue: name }, 'replica-wait queue connection error'));
    return queue;
  });
  lifecycle.defer('api redis replica waits', async () => {
    await writers.close();
    for (const c of connections) await c.quit().catch(() => c.disconnect());
  });
  connections.forEach((c, i) => metrics.watchRedis(`replica-waits-${i}`, c));
  try {
    await withDeadline(Promise.all(connections.map(whenReady)), 15_000);
  } catch (err) {
    throw new StartupError(`Redis is not reachable: ${(err as Error).message}`, { cause: err });
  }
  return writers;
}

/**
 * The query side's pools: the read replica's own (read-only, the same schema as a startup parameter:
 * no migration, no `CREATE`, no `SET` ever reaches it) with the primary as fallback, or the primary
 * alone when `DATABASE_READ_URL` is unset. Not probed at start: a replica that is down only sends the
 * reads to the primary (counted as fallbacks, `collector_up{collector="pg_replica"}` 0).
 */
function openReadPools(rt: Runtime, metrics: Metrics): ReadPools {
  const { config, logger, pool, lifecycle } = rt;
  const readUrl = config.database.readUrl;
  if (!readUrl) return createReadPools({ primary: pool });
  const replica = createPool({
    ...config.database,
    url: readUrl,
    readOnly: true,
    applicationName: 'conveyor-api-reads',
  });
  lifecycle.defer('postgres replica', () => replica.end());
  metrics.watchPgPool('replica', replica);
  const counters = metrics.watchPgReplica(() => replicaLag(pool, replica));
  const reads = createReadPools({
    primary: pool,
    replica,
    onReplicaRead: counters.read,
    onFallback(reason, err) {
      counters.fallback(reason);
      if (err) logger.warn({ err }, 'read replica failed: reading the primary');
    },
  });
  logger.info({ host: new URL(readUrl).host }, 'query side reads the replica');
  return reads;
}

/** Builds the API from a bootstrapped runtime and listens; registers its cleanups on the lifecycle. */
export async function startApi(
  rt: Runtime,
  options: { metrics?: Metrics; results?: Partial<ResultsSettings> } = {},
): Promise<ApiServer> {
  const { config, logger, pool, redis, lifecycle } = rt;
  // Keys first: a bad entry stops the start before any connection is opened.
  let apiKeys: ApiKey[];
  try {
    apiKeys = parseApiKeys(config.api.apiKeys, knownScopes(MODULES));
  } catch (err) {
    throw new StartupError((err as Error).message);
  }
  if (apiKeys.length === 0) {
    if (config.env === 'production')
      throw new StartupError('API_KEYS is empty: refusing to serve without authentication in production');
    logger.warn(`no API_KEYS configured: accepting the development key "${DEV_KEY}" with every scope`);
  }
  // A caller that hosts workers too (main.ts) passes its own, so one /metrics covers the process.
  const metrics = options.metrics ?? createMetrics();
  if (!options.metrics) lifecycle.defer('metrics', () => metrics.close());
  metrics.watchPgPool('main', pool);
  metrics.watchRedis('main', redis);
  const reads = openReadPools(rt, metrics);
  const requestRedis = await openRequestRedis(rt);
  metrics.watchRedis('requests', requestRedis);
  const writers = await openReplicaWriters(rt, metrics);
  const outcomes = await openHub(rt);
  lifecycle.defer('api results hub', () => outcomes.close());
  // Batch routes' bulks on a connection of their own (CommandTarget.bulk).
  const bulkRedis = duplicateClient(redis, {
    connectionName: `${connectionNameOf(redis) ?? 'conveyor'}-bulk`,
  });
  lifecycle.defer('api redis bulk', async () => {
    await bulkRedis.quit().catch(() => bulkRedis.disconnect());
  });
  metrics.watchRedis('bulk', bulkRedis);
  const commandQueues = new Map<string, CommandTarget>(
    MODULES.map((module) => {
      const queue = createCommandQueue(redis, config.redis.queuePrefix, module.name);
      // Without listeners BullMQ prints connection errors; /readyz and 503s already surface them.
      queue.on('error', (err) => logger.debug({ err, queue: module.name }, 'command queue connection error'));
      const jobOptions = commandJobOptions(moduleSettings(config, module.name));
      // REDIS_WAIT_REPLICAS: a 202 only once the job is on that many replicas too; the add and its
      // WAIT on a writer connection of their own, never on the one probes and metrics use.
      const replicaWait = {
        replicas: config.redis.waitReplicas,
        timeoutMs: config.redis.waitTimeoutMs,
        writers,
      };
      // FAIRNESS: a command with a tenant takes its turn among the tenants (shared/fairness); the
      // fair queue's keys live beside the BullMQ queue's, under its prefix (and hash tag).
      const fair = fairTarget(config.fairness, module.name, queue.toKey(''));
      const bulkQueue = createCommandQueue(bulkRedis, config.redis.queuePrefix, module.name);
      bulkQueue.on('error', (err) =>
        logger.debug({ err, queue: module.name }, 'bulk queue connection error'),
      );
      const target = { queue, jobName: module.jobName, jobOptions, replicaWait, fair };
      return [module.name, { module, ...target, bulk: { ...target, queue: bulkQueue } }];
    }),
  );
  const moduleApis = await Promise.all(MODULES.map(async (m) => ({ name: m.name, api: await m.api() })));
  const redriver = createRuntimeRedriver({ config, logger, pool, redis, modules: MODULES });
  const app = createApp(
    {
      config,
      logger,
      pool,
      reads,
      redis,
      requestRedis,
      commandQueues,
      moduleApis,
      idempotency: createIdempotencyStore(requestRedis, {
        prefix: config.redis.queuePrefix,
        ttlSeconds: config.api.idempotencyTtlSeconds,
        lockSeconds: config.api.idempotencyLockSeconds,
      }),
      deadLetters: createDeadLetterStore(pool, { reads }),
      redrive: redriver.redrive,
      sessions: createApiSessionStore(requestRedis, {
        prefix: config.redis.queuePrefix,
        ttlSeconds: config.dashboard.sessionTtlSeconds,
      }),
      apiKeys,
      metrics,
    },
    // One process, one liveness: a failed worker in the all-in-one process turns this /healthz 503 too.
    {
      failure: lifecycle.failure,
      results: { hub: outcomes, settings: resultsSettings(config, options.results) },
    },
  );

  const server = await new Promise<ReturnType<typeof serve>>((resolve) => {
    const s = serve({ fetch: app.fetch, port: config.api.port, hostname: config.api.host }, () => resolve(s));
  });
  const port = (server.address() as AddressInfo).port;
  logger.info({ port, host: config.api.host }, 'api listening');

  let closing: Promise<void> | undefined;
  const close = () =>
    (closing ??= (async () => {
      // Waiters answer and streams end first: an open stream would hold server.close() open.
      await outcomes.close();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await redriver.close();
      for (const { queue, bulk } of commandQueues.values()) {
        await queue.close();
        await bulk?.queue.close();
      }
    })());
  lifecycle.defer('api', close);
  return { port, outcomes, close };
}
