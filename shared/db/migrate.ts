import { readdir, readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import type { ModuleDefinition } from '../modules/module.ts';
import type { Logger } from '../observability/logger.ts';
import type { Pool } from './pool.ts';

const MIGRATIONS_DIR = fileURLToPath(new URL('./migrations/', import.meta.url));
/** Arbitrary, fixed: every Conveyor process migrating the same database serializes on it. */
const ADVISORY_LOCK_ID = 727_274_001;

interface Migration {
  /** As recorded in `schema_migrations`: the core's by file name, a module's as `<module>/<file>`. */
  name: string;
  path: string;
}

async function sqlFiles(dir: string, prefix: string): Promise<Migration[]> {
  const files = (await readdir(dir)).filter((f) => f.endsWith('.sql')).sort();
  return files.map((f) => ({ name: prefix + f, path: dir + f }));
}

/** The core's migrations, then each module's in registry order (a module may build on those above it). */
async function allMigrations(
  modules: readonly Pick<ModuleDefinition, 'name' | 'migrations'>[],
): Promise<Migration[]> {
  const own = await Promise.all(
    modules.map((m) => (m.migrations ? sqlFiles(fileURLToPath(m.migrations), `${m.name}/`) : [])),
  );
  return [...(await sqlFiles(MIGRATIONS_DIR, '')), ...own.flat()];
}

/**
 * Applies the core's `shared/db/migrations/*.sql`, then each of `modules`' (the registry's, in its
 * order), each file in its own transaction, recording them in `schema_migrations`. Safe when several
 * processes start at once: they serialize on an advisory lock and skip what is already applied.
 * @example await migrate(pool, config.database.schema, MODULES, logger);
 */
export async function migrate(
  pool: Pool,
  schema: string,
  modules: readonly Pick<ModuleDefinition, 'name' | 'migrations'>[],
  log?: Logger,
): Promise<string[]> {
  const files = await allMigrations(modules);
  const client = await pool.connect();
  const applied: string[] = [];
  try {
    await client.query('SELECT pg_advisory_lock($1)', [ADVISORY_LOCK_ID]);
    await client.query(`CREATE SCHEMA IF NOT EXISTS "${schema}"`);
    await client.query(`SET search_path TO "${schema}", public`);
    await client.query(
      `CREATE TABLE IF NOT EXISTS schema_migrations (name text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())`,
    );
    const done = new Set(
      (await client.query<{ name: string }>('SELECT name FROM schema_migrations')).rows.map((r) => r.name),
    );
    for (const { name: file, path } of files) {
      if (done.has(file)) continue;
      const sql = await readFile(path, 'utf8');
      await client.query('BEGIN');
      try {
        await client.query(sql);
        await client.query('INSERT INTO schema_migrations (name) VALUES ($1)', [file]);
        await client.query('COMMIT');
      } catch (err) {
        await client.query('ROLLBACK');
        throw new Error(`migration ${file} failed: ${(err as Error).message}`, { cause: err });
      }
      applied.push(file);
      log?.info({ migration: file, schema }, 'migration applied');
    }
  } finally {
    await client.query('SELECT pg_advisory_unlock($1)', [ADVISORY_LOCK_ID]).catch(() => undefined);
    await client.query('RESET search_path').catch(() => undefined);
    client.release();
  }
  return applied;
}
