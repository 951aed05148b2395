import { createEventBus } from '../shared/bus/create-bus.ts';
import { createPgDeadLetterSink } from '../shared/dead-letters/dead-letter.ts';
import type { Runtime } from '../shared/runtime/bootstrap.ts';
import type { Metrics } from '../shared/observability/metrics.ts';
import { QueueNames } from '../shared/queue/names.ts';
import { watchWorkerSources } from './metrics-server.ts';
import { createPaymentGateway } from './orders/payment.ts';
import { createOrderWorker } from './orders/worker.ts';
import { createPruner } from './maintenance/pruner.ts';
import { createRelay } from './outbox/relay.ts';
import { createProjector, PROJECTOR_CONSUMER } from './projections/projector.ts';

export type WorkerKind = 'orders' | 'outbox' | 'projections';

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
  if (metrics) watchWorkerSources(metrics, rt, kinds);
  const needsBus = kinds.includes('outbox') || kinds.includes('projections');
  if (needsBus) {
    const bus = await createEventBus(
      config.bus.kind,
      { logger, deadLetters: createPgDeadLetterSink(pool), metrics, onFatal: lifecycle.fail },
      config,
    );
    await bus.start();
    lifecycle.defer('bus', () => bus.close());

    if (kinds.includes('projections')) {
      const projector = createProjector({
        pool,
        logger,
        ...config.workers.projections,
        afterCommit: chaosKill(rt, config.chaos.killAfterProjectionCommit, 'projection-commit'),
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
        },
      );
      lifecycle.defer('retention', () => pruner.close());
    }
  }
  if (kinds.includes('orders')) {
    // Payment authorization behind the circuit breaker; closed after the worker (reverse order).
    const payments = createPaymentGateway(
      { logger, onStateChange: metrics && ((name, state) => metrics.setCircuitBreakerState(name, state)) },
      { url: config.payment.url, ...config.circuitBreaker },
    );
    lifecycle.defer('payments', async () => payments.close());
    const worker = createOrderWorker(
      { pool, logger, payments, onFatal: lifecycle.fail },
      {
        redisUrl: config.redis.url,
        queuePrefix: config.redis.queuePrefix,
        ...config.workers.orders,
        shutdownGraceMs: config.workers.shutdownGraceMs,
      },
    );
    metrics?.instrumentWorker(worker.worker, QueueNames.orders);
    lifecycle.defer('order-worker', () => worker.close());
  }
  logger.info({ kinds, bus: config.bus.kind }, 'workers started');
}
