import pg from 'pg';

export type Pool = pg.Pool;
export type PoolClient = pg.PoolClient;

export interface PoolOptions {
  url: string;
  schema: string;
  poolMax: number;
  statementTimeoutMs: number;
  applicationName?: string;
  /**
   * Every transaction read-only (`default_transaction_read_only`): for a read replica's pool, so even a
   * URL that names a primary by mistake can never be written through it.
   */
  readOnly?: boolean;
}

// int8 (COUNT, SUM, bigserial) as JS numbers: our sums are bounded far below 2^53.
pg.types.setTypeParser(20, (v) => Number(v));

/**
 * A pg pool whose connections use the configured schema and a statement timeout. Both are startup
 * parameters of each connection, not statements: nothing is run against the server to set them, so a
 * pool on a read-only hot standby works the same (no DDL, no `SET`).
 */
export function createPool(options: PoolOptions): Pool {
  const pool = new pg.Pool({
    connectionString: options.url,
    max: options.poolMax,
    connectionTimeoutMillis: 5_000,
    idleTimeoutMillis: 30_000,
    statement_timeout: options.statementTimeoutMs,
    application_name: options.applicationName ?? 'conveyor',
    options: `-c search_path=${options.schema},public${options.readOnly ? ' -c default_transaction_read_only=on' : ''}`,
  });
  // An idle client losing its connection (Postgres restart) must not crash the process.
  pool.on('error', () => undefined);
  // Nor may a checked-out one between queries (pg-pool listens only while a client is idle): the
  // next query on it fails instead, and the broken client is dropped on release.
  pool.on('connect', (client) => client.on('error', () => undefined));
  return pool;
}

/** Runs `fn` in one transaction; rolls back on any error. */
export async function withTransaction<T>(pool: Pool, fn: (client: PoolClient) => Promise<T>): Promise<T> {
  const client = await pool.connect();
  try {
    await client.query('BEGIN');
    const result = await fn(client);
    await client.query('COMMIT');
    return result;
  } catch (err) {
    await client.query('ROLLBACK').catch(() => undefined);
    throw err;
  } finally {
    client.release();
  }
}

/** Creates the database named in `url` when absent (connecting to the `postgres` maintenance db). */
export async function ensureDatabase(url: string): Promise<void> {
  const target = new URL(url);
  const name = decodeURIComponent(target.pathname.replace(/^\//, ''));
  if (!name) return;
  const probe = new pg.Client({ connectionString: url, connectionTimeoutMillis: 5_000 });
  try {
    await probe.connect();
    return;
  } catch (err) {
    if ((err as { code?: string }).code !== '3D000') throw err; // invalid_catalog_name
  } finally {
    await probe.end().catch(() => undefined);
  }
  const admin = new URL(url);
  admin.pathname = '/postgres';
  const client = new pg.Client({ connectionString: admin.toString(), connectionTimeoutMillis: 5_000 });
  await client.connect();
  try {
    await client.query(`CREATE DATABASE "${name.replaceAll('"', '""')}"`);
  } catch (err) {
    // Created concurrently by another process: 42P04 duplicate_database, or 23505 on pg_database's index.
    const code = (err as { code?: string }).code;
    if (code !== '42P04' && code !== '23505') throw err;
  } finally {
    await client.end();
  }
}
