import { Queue } from 'bullmq';
import { createEventBus } from '../bus/create-bus.ts';
import type { EventBus } from '../bus/event-bus.ts';
import type { Config } from '../config/config.ts';
import type { Pool } from '../db/pool.ts';
import type { Logger } from '../observability/logger.ts';
import type { ModuleDefinition } from '../modules/module.ts';
import { moduleSettings } from '../modules/settings.ts';
import { commandQueues, queueOptions } from '../queue/names.ts';
import { commandJobOptions, createCommandQueue } from '../queue/command-queue.ts';
import type { Redis } from '../queue/redis.ts';
import { createPgDeadLetterSink, type Transport } from './dead-letter.ts';
import { createRedriver, type RedriveTarget, type Redriver } from './redrive.ts';

export interface RuntimeRedriverDeps {
  config: Config;
  logger: Logger;
  pool: Pool;
  redis: Redis;
  /** The registered command modules (the registry's, from the composition root): where commands go back. */
  modules: readonly Pick<ModuleDefinition, 'name' | 'jobName'>[];
}

export interface RuntimeRedriver {
  redrive: Redriver;
  /** Closes the queues and every bus opened for a redrive. Idempotent. */
  close(): Promise<void>;
}

/**
 * A {@link Redriver} wired from a process's runtime: each of `deps.modules`' command queue and
 * dead-letter queue on the shared Redis connection, and one event bus per transport, opened on first use
 * (a process that never redrives a Kafka event never connects to Kafka).
 */
export function createRuntimeRedriver(deps: RuntimeRedriverDeps): RuntimeRedriver {
  const { config, logger, pool, redis } = deps;
  const prefix = config.redis.queuePrefix;
  const targets = new Map<string, RedriveTarget>(
    deps.modules.map((m) => {
      const names = commandQueues(m.name);
      const target: RedriveTarget = {
        queue: createCommandQueue(redis, prefix, names.commands),
        deadLetterQueue: new Queue(names.deadLetters, queueOptions(redis, prefix, names.deadLetters)),
        jobName: m.jobName,
        jobOptions: commandJobOptions(moduleSettings(config, m.name)),
      };
      return [names.commands, target];
    }),
  );
  const buses = new Map<Transport, Promise<EventBus>>();
  const busFor = (transport: Transport) => {
    let bus = buses.get(transport);
    if (!bus) {
      bus = createEventBus(transport, { logger, deadLetters: createPgDeadLetterSink(pool) }, config).then(
        async (b) => {
          await b.start();
          return b;
        },
      );
      // A bus that failed to start is forgotten so the next redrive tries again.
      bus.catch(() => buses.delete(transport));
      buses.set(transport, bus);
    }
    return bus;
  };
  const redrive = createRedriver({ commands: (origin) => targets.get(origin), bus: busFor });
  let closing: Promise<void> | undefined;
  const close = () =>
    (closing ??= (async () => {
      for (const bus of [...buses.values()].toReversed()) {
        await bus
          .then((b) => b.close())
          .catch((err: unknown) => logger.warn({ err }, 'closing a redrive bus failed'));
      }
      for (const t of targets.values()) {
        await t.deadLetterQueue.close();
        await t.queue.close();
      }
    })());
  return { redrive, close };
}
