import { loadConfigOrExit } from '../shared/config/config.ts';
import { bootstrap, exitOnStartupFailure } from '../shared/runtime/bootstrap.ts';
import { startDashboard } from './server.ts';
import { MODULES } from '../modules/registry.ts';

const config = loadConfigOrExit(process.env, { modules: MODULES });
const rt = await bootstrap(config, 'dashboard', MODULES).catch(exitOnStartupFailure);
rt.lifecycle.handleSignals(config.workers.shutdownGraceMs);
await startDashboard(rt).catch(exitOnStartupFailure);
