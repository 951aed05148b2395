import { loadConfigOrExit } from '../shared/config/config.ts';
import { bootstrap, exitOnStartupFailure } from '../shared/runtime/bootstrap.ts';
import { startDashboard } from './server.ts';

const config = loadConfigOrExit(process.env);
const rt = await bootstrap(config, 'dashboard').catch(exitOnStartupFailure);
rt.lifecycle.handleSignals(config.workers.shutdownGraceMs);
await startDashboard(rt).catch(exitOnStartupFailure);
