// All-in-one process for local use: API + every worker kind (+ dashboard) against one runtime.
// In production each part runs and scales on its own (`npm run api`, `npm run workers`, `npm run dashboard`).
import { startApi } from './api/server.ts';
import { loadConfigOrExit } from './shared/config/config.ts';
import { bootstrap, exitOnStartupFailure } from './shared/runtime/bootstrap.ts';
import { startWorkers } from './workers/start.ts';

const config = loadConfigOrExit(process.env);
const rt = await bootstrap(config, 'all').catch(exitOnStartupFailure);
rt.lifecycle.handleSignals(config.workers.shutdownGraceMs);
await startWorkers(rt, config.workers.kinds).catch(exitOnStartupFailure);
await startApi(rt).catch(exitOnStartupFailure);
