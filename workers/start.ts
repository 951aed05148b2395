import { createEventBus } from '../shared/bus/create-bus.ts';
import { createOutcomePublisher } from '../shared/results/wire.ts';
import { createPgDeadLetterSink } from '../shared/dead-letters/dead-letter.ts';
import type { Runtime } from '../shared/runtime/bootstrap.ts';
import type { Metrics } from '../shared/observability/metrics.ts';
import { MODULES } from '../modules/registry.ts';
import { moduleSettings } from '../shared/modules/settings.ts';
import { createBreakerReporter } from '../shared/resilience/breaker-reports.ts';
import { watchWorkerSources } from './metrics-server.ts';
import { createCommandWorker } from './commands/worker.ts';
import { createPruner } from './maintenance/pruner.ts';
import { createOutboxWaker } from './outbox/wake.ts';
import { createRelay } from './outbox/relay.ts';
import { createProjector, loadEventCatalog, PROJECTOR_CONSUMER } from './projections/projector.ts';
import { createRuntimeBulkRunner } from '../shared/bulk/runtime.ts';

/** `outbox` (relay and retention), `projections` (every module's read models), or a module's name (its command worker). */
export type WorkerKind = string;

/** The worker kinds a process may run: the core's two and one per registered module. */
export const WORKER_KINDS: readonly WorkerKind[] = ['outbox', 'projections', ...MODULES.map((m) => m.name)];

/**
 * Chaos tests only: a hook that SIGKILLs this process the `nth` time it runs — a crash at a precise
 * point (after publish before mark, after commit before ack). Never armed outside NODE_ENV=test.
 */
function chaosKill(rt: Runtime, nth: number, where: string): (() => void) | undefined {
  if (nth <= 0 || rt.config.env !== 'test') return undefined;
  let calls = 0;
  return () => {
    if (++calls !== nth) return;
    rt.logger.warn({ where, calls }, 'chaos: killing this process with SIGKILL');
    process.kill(process.pid, 'SIGKILL');
  };
}

/**
 * Starts the requested worker kinds in this process. Cleanups are registered so that on shutdown the
 * order worker stops taking jobs first and finishes in-flight ones, then relay and projections stop.
 * Each component reports a failure it cannot recover from to `rt.lifecycle.fail` (`/healthz` 503,
 * then a graceful shutdown and a non-zero exit when the lifecycle owns the process).
 */
export async function startWorkers(
  rt: Runtime,
  kinds: readonly WorkerKind[],
  options: { metrics?: Metrics } = {},
): Promise<void> {
  const { config, logger, pool, lifecycle } = rt;
  const { metrics } = options;
  const unknown = kinds.filter((k) => !WORKER_KINDS.includes(k));
  if (unknown.length > 0) {
    throw new Error(`unknown worker kind ${unknown.join(', ')}: use ${WORKER_KINDS.join(', ')}`);
  }
  if (metrics) watchWorkerSources(metrics, rt, kinds);
  const needsBus = kinds.includes('outbox') || kinds.includes('projections');
  if (needsBus) {
    const bus = await createEventBus(
      config.bus.kind,
      {
        logger,
        deadLetters: createPgDeadLetterSink(pool),
        metrics,
        onFatal: lifecycle.fail,
        ...(metrics ? { onVerdict: (verdict, origin) => metrics.countVerdict(verdict, origin) } : {}),
      },
      config,
    );
    await bus.start();
    lifecycle.defer('bus', () => bus.close());

    if (kinds.includes('projections')) {
      const projector = createProjector({
        pool,
        logger,
        catalog: await loadEventCatalog(),
        ...config.workers.projections,
        afterCommit: chaosKill(rt, config.chaos.killAfterProjectionCommit, 'projection-commit'),
        // `projected` steps for open lifecycle streams and waits (api/results), after each commit.
        outcomes: createOutcomePublisher(rt.redis, config.redis.queuePrefix, (err) =>
          logger.debug({ err }, 'results step not published'),
        ),
      });
      const sub = await bus.subscribe(PROJECTOR_CONSUMER, projector.handle);
      lifecycle.defer('projections', async () => {
        await sub.close();
        await projector.drain();
      });
    }
    if (kinds.includes('outbox')) {
      const relay = createRelay(
        {
          pool,
          bus,
          logger,
          onFatal: lifecycle.fail,
          afterPublish: chaosKill(rt, config.chaos.killAfterPublish, 'outbox-publish'),
        },
        {
          databaseUrl: config.database.url,
          schema: config.database.schema,
          batchSize: config.workers.outbox.batchSize,
          pollIntervalMs: config.workers.outbox.pollIntervalMs,
        },
      );
      lifecycle.defer('outbox-relay', () => relay.close());
      // The relays' deployment also keeps the tables that only grow within their retention.
      const pruner = createPruner(
        { pool, logger },
        {
          outboxRetentionHours: config.workers.outbox.retentionHours,
          auditRetentionDays: config.retention.auditDays,
          deadLetterRetentionDays: config.retention.deadLetterDays,
          inboxRetentionHours: config.retention.inboxHours,
        },
      );
      lifecycle.defer('retention', () => pruner.close());
      // Bulk actions by query: one runner per relay process, rate-limited, resumable after a crash (shared/bulk).
      const bulk = createRuntimeBulkRunner(rt, { ratePerSecond: config.bulk.ratePerSecond });
      bulk.start();
      lifecycle.defer('bulk-runner', () => bulk.stop());
    }
  }
  // Each module's command worker; on shutdown it stops taking jobs first and finishes in-flight ones.
  const onOutboxAppended = createOutboxWaker(pool);
  const commandModules = MODULES.filter((m) => kinds.includes(m.name));
  // Breaker transitions go to this process's gauge and, for the operators' console, to Redis.
  const breakers =
    commandModules.length > 0 ? createBreakerReporter(rt.redis, config.redis.queuePrefix) : undefined;
  if (breakers) lifecycle.defer('breaker-reports', () => breakers.close());
  for (const module of commandModules) {
    const settings = moduleSettings(config, module.name);
    const handler = (await module.worker()).commands({
      pool,
      logger,
      config,
      settings,
      onOutboxAppended,
      onBreakerState: (name, state) => {
        metrics?.setCircuitBreakerState(name, state);
        breakers?.report(name, state);
      },
    });
    const worker = createCommandWorker(
      {
        pool,
        logger,
        module,
        handler,
        onOutboxAppended,
        onFatal: lifecycle.fail,
        ...(metrics ? { onVerdict: (verdict, origin) => metrics.countVerdict(verdict, origin) } : {}),
      },
      {
        redisUrl: config.redis.url,
        redisClusterNodes: config.redis.clusterNodes,
        queuePrefix: config.redis.queuePrefix,
        ...settings,
        // An outage snoozes commands like events: BUS_SNOOZE_MS doubling to BUS_SNOOZE_MAX_MS.
        snoozeMs: config.bus.snoozeMs,
        snoozeMaxMs: config.bus.snoozeMaxMs,
        shutdownGraceMs: config.workers.shutdownGraceMs,
        // Fair execution between tenants: this worker gives slots back and tops the queue up. With
        // FAIRNESS=false the API holds nothing; the periodic call still lets in what was held before.
        fairness: {
          depth: config.fairness.depth,
          holdMs: config.fairness.holdMs,
          dispatchIntervalMs: config.fairness.dispatchIntervalMs,
          reserve: config.fairness.reserve,
          leftoversOnly: !config.fairness.enabled,
        },
      },
    );
    metrics?.instrumentWorker(worker.worker, module.name);
    lifecycle.defer(`${module.name}-worker`, () => worker.close());
  }
  logger.info({ kinds, bus: config.bus.kind }, 'workers started');
}
