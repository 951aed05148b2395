import { createEventBus } from '../shared/bus/create-bus.ts';
import { createPgDeadLetterSink } from '../shared/dead-letters/dead-letter.ts';
import type { Runtime } from '../shared/runtime/bootstrap.ts';
import { createOrderWorker } from './orders/worker.ts';
import { createRelay } from './outbox/relay.ts';
import { createProjector, PROJECTOR_CONSUMER } from './projections/projector.ts';

export type WorkerKind = 'orders' | 'outbox' | 'projections';

/**
 * Starts the requested worker kinds in this process. Cleanups are registered so that on shutdown the
 * order worker stops taking jobs first and finishes in-flight ones, then relay and projections stop.
 */
export async function startWorkers(rt: Runtime, kinds: readonly WorkerKind[]): Promise<void> {
  const { config, logger, pool, lifecycle } = rt;
  const needsBus = kinds.includes('outbox') || kinds.includes('projections');
  if (needsBus) {
    const bus = await createEventBus(config.bus.kind, { logger, deadLetters: createPgDeadLetterSink(pool) }, config);
    await bus.start();
    lifecycle.defer('bus', () => bus.close());

    if (kinds.includes('projections')) {
      const projector = createProjector({ pool, logger, ...config.workers.projections });
      const sub = await bus.subscribe(PROJECTOR_CONSUMER, projector.handle);
      lifecycle.defer('projections', async () => {
        await sub.close();
        await projector.drain();
      });
    }
    if (kinds.includes('outbox')) {
      const relay = createRelay(
        { pool, bus, logger },
        { databaseUrl: config.database.url, schema: config.database.schema, ...config.workers.outbox },
      );
      lifecycle.defer('outbox-relay', () => relay.close());
    }
  }
  if (kinds.includes('orders')) {
    const worker = createOrderWorker(
      { pool, logger },
      {
        redisUrl: config.redis.url,
        queuePrefix: config.redis.queuePrefix,
        ...config.workers.orders,
        shutdownGraceMs: config.workers.shutdownGraceMs,
      },
    );
    lifecycle.defer('order-worker', () => worker.close());
  }
  logger.info({ kinds, bus: config.bus.kind }, 'workers started');
}
