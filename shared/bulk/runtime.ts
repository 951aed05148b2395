import type { Queue } from 'bullmq';
import { createCommandCanceller } from '../commands/cancel.ts';
import type { Config } from '../config/config.ts';
import type { Pool } from '../db/pool.ts';
import { createDeadLetterActions } from '../dead-letters/actions.ts';
import { createRuntimeRedriver } from '../dead-letters/runtime-redriver.ts';
import { fairTarget } from '../fairness/fair-queue.ts';
import type { Logger } from '../observability/logger.ts';
import type { JobTarget } from '../http/enqueue.ts';
import type { ModuleDefinition } from '../modules/module.ts';
import { moduleSettings } from '../modules/settings.ts';
import { commandJobOptions, createCommandQueue } from '../queue/command-queue.ts';
import type { Redis } from '../queue/redis.ts';
import { createCommandSearch } from '../search/search.ts';
import { createRedriveRecovery, replayItems } from './items.ts';
import { createBulkRunner, type BulkRunner, type BulkRunnerOptions } from './runner.ts';

export interface RuntimeBulkRunnerDeps {
  config: Config;
  logger: Logger;
  pool: Pool;
  redis: Redis;
  /** The registered command modules (the registry's, from the composition root): what bulk actions act on. */
  modules: readonly ModuleDefinition[];
}

/**
 * The bulk runner wired from a process's runtime: per-item redrive by the dead-letter actions, cancel
 * by the command canceller over each module's queue (and fair queue), replay through the same fair
 * admission as the API's (the original's tenant takes its turn), selection by the command search on
 * the primary. `stop()` stops the runner, then closes what it opened.
 * @example
 * const bulk = createRuntimeBulkRunner(rt, { ratePerSecond: config.bulk.ratePerSecond });
 * bulk.start();
 * rt.lifecycle.defer('bulk-runner', () => bulk.stop());
 */
export function createRuntimeBulkRunner(
  deps: RuntimeBulkRunnerDeps,
  options: BulkRunnerOptions = {},
): BulkRunner {
  const { config, logger, pool, redis, modules } = deps;
  const prefix = config.redis.queuePrefix;
  const redriver = createRuntimeRedriver({ config, logger, pool, redis, modules });
  const queues = new Map<string, Queue>(
    modules.map((m) => [m.name, createCommandQueue(redis, prefix, m.name)]),
  );
  const fair = new Map(
    [...queues].flatMap(([name, q]) => {
      const target = fairTarget(config.fairness, name, q.toKey(''));
      return target ? [[name, target.queue] as const] : [];
    }),
  );
  const targets = new Map<string, JobTarget>(
    modules.map((m) => {
      const fairQueue = fair.get(m.name);
      return [
        m.name,
        {
          queue: queues.get(m.name)!,
          jobName: m.jobName,
          jobOptions: commandJobOptions(moduleSettings(config, m.name)),
          replicaWait: { replicas: config.redis.waitReplicas, timeoutMs: config.redis.waitTimeoutMs },
          fair: fairQueue && { queue: fairQueue, holdMs: config.fairness.holdMs },
        },
      ];
    }),
  );
  const search = createCommandSearch({
    reads: { read: (fn) => fn(pool) },
    redis,
    queuePrefix: prefix,
    queueOf: (module) => queues.get(module),
  });
  const runner = createBulkRunner(
    {
      pool,
      logger,
      search,
      modules,
      deadLetters: createDeadLetterActions({
        pool,
        redis,
        queuePrefix: prefix,
        redrive: redriver.redrive,
        modules,
        logger,
      }),
      redriveRecovery: createRedriveRecovery(pool, redriver.redrive),
      canceller: createCommandCanceller({
        pool,
        modules,
        queue: (module) => queues.get(module),
        fair: (module) => fair.get(module),
        redis,
        prefix,
        logger,
      }),
      replay: replayItems({
        pool,
        modules,
        target: (module) => targets.get(module),
        tenant: (id) => ({ id, policy: config.fairness.tenants.policyOf(id) }),
      }),
    },
    options,
  );
  let stopping: Promise<void> | undefined;
  return {
    start: () => runner.start(),
    stop: () =>
      (stopping ??= (async () => {
        await runner.stop();
        await search.close().catch((err: unknown) => logger.warn({ err }, 'closing the bulk search failed'));
        for (const q of queues.values()) await q.close().catch(() => undefined);
        await redriver.close();
      })()),
  };
}
