// All-in-one process for local use: API + every worker kind (+ dashboard) against one runtime.
// In production each part runs and scales on its own (`npm run api`, `npm run workers`, `npm run dashboard`).
import { startApi } from './api/server.ts';
import { startDashboard } from './dashboard/server.ts';
import { loadConfigOrExit } from './shared/config/config.ts';
import { createMetrics } from './shared/observability/metrics.ts';
import { bootstrap, exitOnStartupFailure } from './shared/runtime/bootstrap.ts';
import { startWorkers } from './workers/start.ts';
import { MODULES } from './modules/registry.ts';

const config = loadConfigOrExit(process.env, { modules: MODULES });
const rt = await bootstrap(config, 'all', MODULES).catch(exitOnStartupFailure);
rt.lifecycle.handleSignals(config.workers.shutdownGraceMs);
// One registry for the whole process: the API's /metrics also reports the workers (no worker metrics server here).
const metrics = createMetrics();
rt.lifecycle.defer('metrics', () => metrics.close());
await startWorkers(rt, config.workers.kinds, { metrics }).catch(exitOnStartupFailure);
await startApi(rt, { metrics }).catch(exitOnStartupFailure);
await startDashboard(rt).catch(exitOnStartupFailure);
