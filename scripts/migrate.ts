import { MODULES } from '../modules/registry.ts';
import { loadConfigOrExit } from '../shared/config/config.ts';
import { migrate } from '../shared/db/migrate.ts';
import { createPool, ensureDatabase } from '../shared/db/pool.ts';
import { createLogger } from '../shared/observability/logger.ts';

// `npm run migrate`: applies the core's and every registered module's migrations, then exits.
const config = loadConfigOrExit(process.env, { modules: MODULES });
const log = createLogger({ level: config.log.level, service: 'migrate' });
if (config.database.createIfMissing) await ensureDatabase(config.database.url);
const pool = createPool({ ...config.database, poolMax: 1 });
try {
  const applied = await migrate(pool, config.database.schema, MODULES, log);
  log.info({ applied: applied.length, schema: config.database.schema }, 'migrations up to date');
} finally {
  await pool.end();
  log.flush();
}
