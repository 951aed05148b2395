// `npm run projections:rebuild [-- --drop-history-older-than-outbox]`: rebuilds the read models from
// retained events while the API serves. Refuses (exit 2, nothing deleted) when retention has pruned events
// the read models were built from, unless the flag says to drop that history.
import { z } from 'zod';
import { loadConfigOrExit } from '../../shared/config/config.ts';
import { bootstrap, exitOnStartupFailure } from '../../shared/runtime/bootstrap.ts';
import { rebuildReadModels, RebuildWouldLoseHistoryError } from './rebuild.ts';
import { MODULES } from '../../modules/registry.ts';

const DROP_HISTORY = '--drop-history-older-than-outbox';
const args = z.array(z.literal(DROP_HISTORY)).max(1).safeParse(process.argv.slice(2));
if (!args.success) {
  process.stderr.write(`usage: npm run projections:rebuild [-- ${DROP_HISTORY}]\n`);
  process.exit(64);
}
const config = loadConfigOrExit(process.env, { modules: MODULES });
const rt = await bootstrap(config, 'rebuild', MODULES).catch(exitOnStartupFailure);
try {
  await rebuildReadModels({
    pool: rt.pool,
    logger: rt.logger,
    dropHistoryOlderThanOutbox: args.data.includes(DROP_HISTORY),
  });
} catch (err) {
  if (!(err instanceof RebuildWouldLoseHistoryError)) throw err;
  rt.logger.error({ lost: err.lost }, err.message);
  process.stderr.write(`${err.message}\n`);
  process.exitCode = 2;
} finally {
  await rt.lifecycle.close();
}
