// `npm run projections:rebuild`: rebuilds the read models from retained events while the API serves.
import { loadConfigOrExit } from '../../shared/config/config.ts';
import { bootstrap, exitOnStartupFailure } from '../../shared/runtime/bootstrap.ts';
import { rebuildReadModels } from './rebuild.ts';

const config = loadConfigOrExit(process.env);
const rt = await bootstrap(config, 'rebuild').catch(exitOnStartupFailure);
try {
  await rebuildReadModels({ pool: rt.pool, logger: rt.logger });
} finally {
  await rt.lifecycle.close();
}
