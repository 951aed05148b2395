import { rabbitmqSettings } from '../../shared/bus/create-bus.ts';
import { startApi } from '../../api/server.ts';
import type { Config } from '../../shared/config/config.ts';
import { dropSchema } from './env.ts';
import { bootstrap, type Runtime } from '../../shared/runtime/bootstrap.ts';
import { startWorkers, WORKER_KINDS, type WorkerKind } from '../../workers/start.ts';
import { Queue } from 'bullmq';
import { allQueueNames } from '../../shared/queue/names.ts';
import { Redis } from 'ioredis';
import { createPool } from '../../shared/db/pool.ts';
import { Kafka, logLevel } from 'kafkajs';
import { rabbitmqTopology } from '../../shared/bus/rabbitmq/bus.ts';
import { deleteRabbitmqTopology } from '../../shared/bus/rabbitmq/admin.ts';
import { sqsGroupsKey } from '../../shared/bus/sqs/groups.ts';
import { deleteSqsTopology } from '../../shared/bus/sqs/admin.ts';
import { PROJECTOR_CONSUMER } from '../../workers/projections/projector.ts';
import { WEBHOOKS_GROUP } from '../../modules/webhooks/worker/fan-out.ts';
import { MODULES } from '../../modules/registry.ts';

export interface Platform {
  rt: Runtime;
  config: Config;
  /** Base URL of the API, e.g. http://127.0.0.1:41234 (absent when `api: false`). */
  url: string;
  /** Stops everything and, unless `keep`, drops the schema and the queues. */
  close(options?: { keep?: boolean }): Promise<void>;
}

/** Runs an isolated Conveyor in this process: API and the chosen worker kinds on a fresh schema/prefix. */
export async function startPlatform(
  config: Config,
  options: { workers?: readonly WorkerKind[]; api?: boolean } = {},
): Promise<Platform> {
  const rt = await bootstrap(config, 'test', MODULES);
  const kinds = options.workers ?? WORKER_KINDS;
  if (kinds.length > 0) await startWorkers(rt, kinds);
  const api = options.api === false ? undefined : await startApi(rt);
  return {
    rt,
    config,
    url: api ? `http://127.0.0.1:${api.port}` : '',
    async close({ keep = false } = {}) {
      await rt.lifecycle.close();
      if (!keep) await cleanup(config);
    },
  };
}

/** Drops an isolated config's schema and BullMQ queues. */
export async function cleanup(config: Config): Promise<void> {
  const redis = new Redis(config.redis.url, { maxRetriesPerRequest: null });
  const pool = createPool({ ...config.database, poolMax: 1 });
  try {
    // Every queue, and the webhooks group's event queue (the projectors' is `events`).
    for (const name of [...allQueueNames(MODULES), `events.${WEBHOOKS_GROUP}`]) {
      const q = new Queue(name, { connection: redis, prefix: config.redis.queuePrefix });
      await q.obliterate({ force: true }).catch(() => undefined);
      await q.close();
    }
    // The fair queues' keys beside them (shared/fairness): BullMQ's obliterate knows only its own.
    const fairKeys: string[] = [];
    let cursor = '0';
    do {
      const [next, keys] = await redis.scan(
        cursor,
        'MATCH',
        `${config.redis.queuePrefix}:*:fair:*`,
        'COUNT',
        1000,
      );
      cursor = next;
      fairKeys.push(...keys);
    } while (cursor !== '0');
    if (fairKeys.length > 0) await redis.del(...fairKeys);
    await dropSchema(pool, config.database.schema).catch(() => undefined);
    if (config.bus.kind === 'rabbitmq') {
      const topology = rabbitmqTopology(rabbitmqSettings(config));
      await deleteRabbitmqTopology(config.bus.rabbitmq.url, topology, [
        PROJECTOR_CONSUMER,
        WEBHOOKS_GROUP,
      ]).catch(() => undefined);
    }
    if (config.bus.kind === 'sqs') {
      const { sqs } = config.bus;
      await deleteSqsTopology({ endpoint: sqs.endpoint, region: sqs.region }, sqs, [
        PROJECTOR_CONSUMER,
        WEBHOOKS_GROUP,
      ]).catch(() => undefined);
      await redis
        .del(sqsGroupsKey(config.redis.queuePrefix, sqs.queuePrefix, sqs.fifo))
        .catch(() => undefined);
    }
    if (config.bus.kind === 'kafka') {
      const kafka = new Kafka({
        brokers: [...config.bus.kafka.brokers],
        clientId: 'test-cleanup',
        logLevel: logLevel.NOTHING,
      });
      const admin = kafka.admin();
      await admin.connect().catch(() => undefined);
      const topic = config.bus.kafka.topic;
      await admin.deleteTopics({ topics: [topic, `${topic}.retry`, `${topic}.dlq`] }).catch(() => undefined);
      await admin
        .deleteGroups([
          config.bus.kafka.consumer.groupId,
          `${config.bus.kafka.consumer.groupId}.${WEBHOOKS_GROUP}`,
        ])
        .catch(() => undefined);
      await admin.disconnect().catch(() => undefined);
    }
  } finally {
    await pool.end();
    redis.disconnect();
  }
}
