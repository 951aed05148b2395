import { loadConfigOrExit } from '../shared/config/config.ts';
import { bootstrap, exitOnStartupFailure } from '../shared/runtime/bootstrap.ts';
import { startApi } from './server.ts';

const config = loadConfigOrExit(process.env);
const rt = await bootstrap(config, 'api').catch(exitOnStartupFailure);
rt.lifecycle.handleSignals(config.workers.shutdownGraceMs);
await startApi(rt).catch(exitOnStartupFailure);
