import { loadConfigOrExit } from '../shared/config/config.ts';
import { bootstrap, exitOnStartupFailure } from '../shared/runtime/bootstrap.ts';
import { startWorkers } from './start.ts';

const config = loadConfigOrExit(process.env);
const rt = await bootstrap(config, 'workers').catch(exitOnStartupFailure);
rt.lifecycle.handleSignals(config.workers.shutdownGraceMs);
await startWorkers(rt, config.workers.kinds).catch(exitOnStartupFailure);
