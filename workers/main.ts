import { loadConfigOrExit } from '../shared/config/config.ts';
import { createMetrics } from '../shared/observability/metrics.ts';
import { bootstrap, exitOnStartupFailure } from '../shared/runtime/bootstrap.ts';
import { startMetricsServer } from './metrics-server.ts';
import { startWorkers } from './start.ts';
import { MODULES } from '../modules/registry.ts';

const config = loadConfigOrExit(process.env, { modules: MODULES });
const rt = await bootstrap(config, 'workers', MODULES).catch(exitOnStartupFailure);
rt.lifecycle.handleSignals(config.workers.shutdownGraceMs);
const metrics = createMetrics();
rt.lifecycle.defer('metrics', () => metrics.close());
await startWorkers(rt, config.workers.kinds, { metrics }).catch(exitOnStartupFailure);
// Started once the workers run, so /readyz does not report a process that is still starting.
const metricsServer = await startMetricsServer({
  metrics,
  pool: rt.pool,
  redis: rt.redis,
  logger: rt.logger,
  port: config.workers.metricsPort,
  host: config.api.host,
  probeTimeoutMs: config.redis.commandTimeoutMs,
  failure: rt.lifecycle.failure,
}).catch(exitOnStartupFailure);
rt.lifecycle.defer('metrics-server', () => metricsServer.close());
