import type { Config } from '../config/config.ts';
import type { DeadLetterSink } from '../dead-letters/dead-letter.ts';
import type { DeliveryCoreDeps } from '../delivery/core.ts';
import type { Logger } from '../observability/logger.ts';
import type { Metrics } from '../observability/metrics.ts';
import type { OnFatal } from '../runtime/lifecycle.ts';
import { createBullmqBus } from './bullmq/bus.ts';
import type { BusKind, EventBus } from './event-bus.ts';

export interface BusDeps {
  logger: Logger;
  deadLetters: DeadLetterSink;
  /** Job counters and durations of the BullMQ bus's consumers, when the process exports metrics. */
  metrics?: Pick<Metrics, 'instrumentWorker'> | undefined;
  /**
   * Told when a subscription can no longer consume and will not recover by itself (its consumer
   * loop ended, kafkajs gave up restarting, RabbitMQ or SQS refuses the topology or credentials or
   * stays unreachable past `recoveryBudgetMs`). Absent: logged only.
   */
  onFatal?: OnFatal | undefined;
  /** Told each verdict the subscriptions' delivery cores carry out (metrics: `countVerdict`). */
  onVerdict?: DeliveryCoreDeps['onVerdict'];
}

/** The event bus chosen by `EVENT_BUS`; every adapter honours the same {@link EventBus} contract. */
export async function createEventBus(kind: BusKind, deps: BusDeps, config: Config): Promise<EventBus> {
  switch (kind) {
    case 'bullmq':
      return createBullmqBus(deps, {
        redisUrl: config.redis.url,
        redisClusterNodes: config.redis.clusterNodes,
        queuePrefix: config.redis.queuePrefix,
        concurrency: config.bus.consumerConcurrency,
        maxAttempts: config.bus.maxAttempts,
        backoffMs: config.bus.backoffMs,
        snoozeMs: config.bus.snoozeMs,
        snoozeMaxMs: config.bus.snoozeMaxMs,
        shutdownGraceMs: config.workers.shutdownGraceMs,
        lockDurationMs: config.bus.lockDurationMs,
        stalledIntervalMs: config.bus.stalledIntervalMs,
        manyFormat: config.bus.batchFormat,
      });
    case 'kafka': {
      const { createKafkaBus } = await import('./kafka/bus.ts');
      return createKafkaBus(deps, {
        ...config.bus.kafka,
        ...deliverySettings(config),
        // Transactional ids are slots leased in Redis, beside the queues (see kafka/transactional-slot.ts).
        redisUrl: config.redis.url,
        redisClusterNodes: config.redis.clusterNodes,
        redisPrefix: config.redis.queuePrefix,
      });
    }
    case 'rabbitmq': {
      const { createRabbitmqBus } = await import('./rabbitmq/bus.ts');
      return createRabbitmqBus(deps, rabbitmqSettings(config));
    }
    case 'sqs': {
      const { createSqsBus } = await import('./sqs/bus.ts');
      return createSqsBus(deps, {
        ...config.bus.sqs,
        ...deliverySettings(config),
        // The group registry lives beside BullMQ's, under the deployment's prefix.
        redisUrl: config.redis.url,
        redisPrefix: config.redis.queuePrefix,
      });
    }
  }
}

/**
 * The RabbitMQ bus's settings from a loaded config: what {@link createEventBus} runs with, and what
 * whoever deletes its topology must name (its delay queues follow the backoff and snooze settings).
 */
export function rabbitmqSettings(config: Config) {
  return { ...config.bus.rabbitmq, ...deliverySettings(config) };
}

/** What every broker bus takes from the delivery settings (the delivery core's policy) and the process's lifecycle. */
function deliverySettings(config: Config) {
  return {
    maxAttempts: config.bus.maxAttempts,
    backoffMs: config.bus.backoffMs,
    snoozeMs: config.bus.snoozeMs,
    snoozeMaxMs: config.bus.snoozeMaxMs,
    shutdownGraceMs: config.workers.shutdownGraceMs,
    recoveryBudgetMs: config.bus.recoveryBudgetMs,
  };
}
