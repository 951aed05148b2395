import type { Config } from '../config/config.ts';
import { migrate } from '../db/migrate.ts';
import { createPool, ensureDatabase, type Pool } from '../db/pool.ts';
import type { ModuleDefinition } from '../modules/module.ts';
import { createLogger, type Logger } from '../observability/logger.ts';
import { tracingHandle } from '../observability/tracing/trace-context.ts';
import {
  aofEnabled,
  checkNoEviction,
  createProducerRedis,
  isCluster,
  masters,
  nodeAddress,
  whenReady,
  type Redis,
  type RedisNode,
} from '../queue/redis.ts';
import { createLifecycle, type Lifecycle } from './lifecycle.ts';
import { withDeadline } from './deadline.ts';

export interface Runtime {
  config: Config;
  logger: Logger;
  pool: Pool;
  /** One Redis (`REDIS_URL`) or a Redis Cluster (`REDIS_CLUSTER_NODES`). */
  redis: Redis;
  lifecycle: Lifecycle;
  /** The registered command modules (modules/registry.ts), handed in by the process's `main.ts`. */
  modules: readonly ModuleDefinition[];
}

/** A startup check that failed, with a message for humans. */
export class StartupError extends Error {
  override readonly name = 'StartupError';
}

async function within<T>(what: string, ms: number, fn: () => Promise<T>): Promise<T> {
  try {
    return await withDeadline(fn(), ms);
  } catch (err) {
    throw new StartupError(`${what}: ${(err as Error).message}`, { cause: err });
  }
}

/**
 * What every process needs before it serves: logger, Postgres (database created, migrations applied
 * under an advisory lock), Redis (reachable, `noeviction`, AOF where required: in production unless
 * `REDIS_REQUIRE_AOF=false`), and a lifecycle for graceful shutdown. `modules` are the registry's:
 * their migrations are applied after the core's, and the runtime hands them on.
 * @example const rt = await bootstrap(config, 'api', MODULES);
 */
export async function bootstrap(
  config: Config,
  service: string,
  modules: readonly ModuleDefinition[],
): Promise<Runtime> {
  const logger = createLogger({
    level: config.log.level,
    service: `${config.serviceName}-${service}`,
    traceIds: config.tracing.enabled,
  });
  const lifecycle = createLifecycle(logger);
  // Deferred first, so run last: the spans of the shutdown itself are exported before the exit. A
  // flush, not a shutdown: the SDK belongs to the process (register.ts), not to this runtime.
  const tracing = tracingHandle();
  if (tracing) lifecycle.defer('tracing', () => tracing.forceFlush());
  else if (config.tracing.enabled)
    logger.warn(
      { exporter: config.tracing.exporter },
      'OTEL_TRACES_EXPORTER is set but the tracing SDK is not loaded: start with node --import ./shared/observability/tracing/register.ts (npm scripts do)',
    );
  const dbHost = new URL(config.database.url).host;
  if (config.database.createIfMissing) {
    await within(`PostgreSQL at ${dbHost} is not reachable`, 15_000, () =>
      ensureDatabase(config.database.url),
    );
  }
  const pool = createPool({ ...config.database, applicationName: `conveyor-${service}` });
  lifecycle.defer('postgres', () => pool.end());
  await within(`PostgreSQL at ${dbHost}: migrations failed`, 60_000, () =>
    migrate(pool, config.database.schema, modules, logger),
  );

  const redis = createProducerRedis(
    {
      url: config.redis.url,
      commandTimeoutMs: config.redis.commandTimeoutMs,
      clusterNodes: config.redis.clusterNodes,
    },
    `conveyor-${service}`,
  );
  lifecycle.defer('redis', async () => {
    await redis.quit().catch(() => redis.disconnect());
  });
  try {
    await checkRedis(redis, config, logger);
  } catch (err) {
    // A refused start releases what it opened (a cluster client would otherwise reconnect forever).
    await lifecycle.close();
    throw err;
  }
  return { config, logger, pool, redis, lifecycle, modules };
}

/**
 * Redis is reachable and safe for BullMQ: with a cluster, every master — each holds some queues, so each
 * must be reachable, keep keys (`noeviction`) and, where required, persist them (AOF).
 */
async function checkRedis(redis: Redis, config: Config, logger: Logger): Promise<void> {
  const clustered = isCluster(redis);
  const where = clustered
    ? `Redis Cluster (seed nodes ${config.redis.clusterNodes!.join(', ')})`
    : `Redis at ${new URL(config.redis.url).host}`;
  await within(`${where} is not reachable`, 15_000, async () => {
    await whenReady(redis);
    await redis.ping();
  });
  // A failover promotes a replica: configure the replicas alike (they are not checked here).
  for (const node of masters(redis)) {
    const name = clustered ? `Redis Cluster master ${nodeAddress(node)}` : where;
    await within(`${name} is not reachable`, 5_000, () => node.ping());
    await checkNode(node, name, config, logger);
  }
}

/** `noeviction` and (where required) AOF on one Redis node. */
async function checkNode(node: RedisNode, name: string, config: Config, logger: Logger): Promise<void> {
  const policy = await checkNoEviction(node).catch(() => 'unknown');
  if (policy !== 'noeviction') {
    const msg = `${name}: maxmemory-policy is "${policy}"; BullMQ needs "noeviction" or queued jobs can be evicted and lost`;
    if (config.redis.requireNoEviction)
      throw new StartupError(`${msg} (set REDIS_REQUIRE_NOEVICTION=false only for tests)`);
    logger.warn({ policy, node: name }, msg);
  }
  // The queue is the durable hand-off between the API's 202 and the workers: a Redis that keeps it
  // only in memory loses every acknowledged job when it restarts.
  const aof = await aofEnabled(node).catch(() => false);
  if (!aof) {
    const msg = `${name} does not persist with the append-only file (appendonly no): a Redis restart would lose every job the API acknowledged`;
    if (config.redis.requireAof)
      throw new StartupError(
        `${msg}. Run Redis with appendonly yes, or set REDIS_REQUIRE_AOF=false to accept that loss`,
      );
    if (config.env === 'production') logger.warn({ node: name }, msg);
  }
}

/** For `main.ts`: logs a failed start clearly and exits non-zero. */
export function exitOnStartupFailure(err: unknown): never {
  const message = err instanceof Error ? err.message : String(err);
  process.stderr.write(`conveyor failed to start: ${message}\n`);
  process.exit(1);
}
