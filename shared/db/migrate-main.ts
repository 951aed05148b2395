import { loadConfigOrExit } from '../config/config.ts';
import { createLogger } from '../observability/logger.ts';
import { migrate } from './migrate.ts';
import { createPool, ensureDatabase } from './pool.ts';

const config = loadConfigOrExit(process.env);
const log = createLogger({ level: config.log.level, service: 'migrate' });
if (config.database.createIfMissing) await ensureDatabase(config.database.url);
const pool = createPool({ ...config.database, poolMax: 1 });
try {
  const applied = await migrate(pool, config.database.schema, log);
  log.info({ applied: applied.length, schema: config.database.schema }, 'migrations up to date');
} finally {
  await pool.end();
  log.flush();
}
