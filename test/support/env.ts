import { randomBytes } from 'node:crypto';
import { loadConfig, type Config } from '../../shared/config/config.ts';
import { createPool, type Pool } from '../../shared/db/pool.ts';
import { migrate } from '../../shared/db/migrate.ts';
import { createLogger, type Logger } from '../../shared/observability/logger.ts';
import { MODULES } from '../../modules/registry.ts';

/** The database every test uses (the machine's `test` db); each test gets its own schema in it. */
export const TEST_DATABASE_URL = process.env.TEST_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
export const TEST_REDIS_URL = process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379';

/** A short unique token: schema names, queue prefixes, consumer groups, topics. */
export function uniqueId(label = 't'): string {
  return `${label}_${Date.now().toString(36)}${randomBytes(3).toString('hex')}`.toLowerCase();
}

/**
 * The environment of an isolated Conveyor: its own Postgres schema and BullMQ prefix, quiet logs.
 * Pass it to `loadConfig` or to a spawned process.
 */
export function isolatedEnv(overrides: Record<string, string> = {}): Record<string, string> {
  const id = uniqueId('cv');
  return {
    NODE_ENV: 'test',
    LOG_LEVEL: process.env.TEST_LOG_LEVEL ?? 'silent',
    DATABASE_URL: TEST_DATABASE_URL,
    DATABASE_SCHEMA: id,
    REDIS_URL: TEST_REDIS_URL,
    QUEUE_PREFIX: id,
    PORT: '0',
    METRICS_PORT: '0',
    DASHBOARD_PORT: '0',
    HOST: '127.0.0.1',
    ORDERS_BACKOFF_MS: '50',
    RATE_LIMIT_MAX: '1000000',
    RATE_LIMIT_READ_MAX: '1000000',
    BUS_BACKOFF_MS: '50',
    OUTBOX_POLL_INTERVAL_MS: '1000',
    SHUTDOWN_GRACE_MS: '5000',
    KAFKA_TOPIC: `conveyor.${id}`,
    KAFKA_GROUP_ID: `conveyor-${id}`,
    RABBITMQ_EXCHANGE: `conveyor.${id}`,
    RABBITMQ_QUEUE: `conveyor.${id}.projections`,
    SQS_QUEUE_PREFIX: `conveyor-${id}`,
    ...overrides,
  };
}

export function testConfig(overrides: Record<string, string> = {}): Config {
  return loadConfig(isolatedEnv(overrides), { modules: MODULES });
}

export function testLogger(): Logger {
  return createLogger({ level: process.env.TEST_LOG_LEVEL ?? 'silent', service: 'test' });
}

/** A migrated pool on the config's schema; drop the schema with {@link dropSchema} afterwards. */
export async function migratedPool(config: Config): Promise<Pool> {
  const pool = createPool({ ...config.database, poolMax: 5 });
  await migrate(pool, config.database.schema, MODULES);
  return pool;
}

export async function dropSchema(pool: Pool, schema: string): Promise<void> {
  await pool.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
}

/** Polls `probe` until it returns a value other than undefined/false, or fails after `timeoutMs`. */
export async function eventually<T>(
  probe: () => Promise<T | undefined | false> | T | undefined | false,
  { timeoutMs = 20_000, intervalMs = 50, what = 'condition' } = {},
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  for (;;) {
    try {
      const value = await probe();
      if (value !== undefined && value !== false) return value;
    } catch (err) {
      lastError = err;
    }
    if (Date.now() > deadline) {
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`, { cause: lastError });
    }
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}
