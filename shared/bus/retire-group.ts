/**
 * Retiring a subscription group: the operator's way (`npm run groups:retire -- <group>`) to end a
 * durable subscription nobody consumes any more. A group stays registered after its consumers stop —
 * so its queue keeps what is published while none runs — and on BullMQ and SQS every publish keeps
 * fanning out to it, forever, filling a queue no one reads. Retiring stops the fan-out and deletes
 * what the group holds, on the bus the configuration names:
 *
 * - BullMQ: removes the group from `<prefix>:event-groups` (publishes stop adding to its queue), then
 *   obliterates its queue `events.<group>` with every job in it.
 * - SQS: removes it from the registry (`<prefix>:sqs-event-groups:<queue prefix>`), then deletes its
 *   queue and DLQ.
 * - RabbitMQ: deletes its work queue (`<exchange>.<group>`; the binding, hence the fan-out, goes with
 *   it), its `undelivered` and `dlq` queues and the delay queues the current backoff and snooze
 *   settings name.
 * - Kafka: deletes its consumer group `<KAFKA_GROUP_ID>.<group>` (its committed offsets). The topics
 *   are shared by every group: nothing else is the group's.
 *
 * It refuses the default group (`projections`, the read models) and a group that still has live
 * consumers: BullMQ workers on its queue (CLIENT LIST, as `Queue.getWorkers` reads it), consumers of
 * its RabbitMQ queues (checked again right before the work queue is deleted: quorum queues do not
 * take an `if-unused` delete), members of its Kafka consumer group (the broker refuses to delete a
 * non-empty group too).
 * SQS cannot list a queue's consumers: it refuses while messages of the queue are in flight (received,
 * not yet deleted) — stop the group's consumers before, an idle one is invisible to SQS.
 *
 * Between unregistering and deleting it waits `settleMs`: a publish that read the group list just
 * before may still be adding to the queue, which would otherwise be left behind (or, on SQS,
 * declared again). The group's dead-letter rows stay in the table (discard them in the console); a
 * redrive of one would declare its queue again.
 */
import type { Channel } from 'amqplib';
import type { Config } from '../config/config.ts';
import { queueOptions } from '../queue/names.ts';
import { createWorkerRedis } from '../queue/redis.ts';
import { BULLMQ_DEFAULT_GROUP, bullmqGroupQueue, bullmqGroupsKey } from './bullmq/bus.ts';
import { rabbitmqSettings } from './create-bus.ts';
import { assertGroupName, type BusKind } from './event-bus.ts';

/** The group every bus's `start()` declares and the projector consumes: never retired. */
export const DEFAULT_GROUP = BULLMQ_DEFAULT_GROUP;

/** Why a group was not retired; nothing was deleted (a registration removed is put back). */
export class RetireGroupRefusedError extends Error {
  override readonly name = 'RetireGroupRefusedError';
  constructor(
    readonly group: string,
    readonly reason: 'default-group' | 'live-consumers',
    message: string,
  ) {
    super(message);
  }
}

export interface RetireGroupOptions {
  /**
   * Wait between stopping the fan-out and deleting, for publishes that read the group list before.
   * @defaultValue 5_000
   */
  settleMs?: number;
}

export interface RetiredGroup {
  bus: BusKind;
  group: string;
  /** Whether publishes still fanned out to it (BullMQ, SQS: it was registered). */
  unregistered: boolean;
  /** What was deleted: queues (with their messages) or the consumer group. Empty: nothing existed. */
  deleted: string[];
}

const settle = (ms: number) => (ms > 0 ? new Promise((r) => setTimeout(r, ms)) : Promise.resolve());

function refuseLive(group: string, what: string): never {
  throw new RetireGroupRefusedError(
    group,
    'live-consumers',
    `group ${JSON.stringify(group)} still has live consumers (${what}): stop them first`,
  );
}

/**
 * Retires subscription group `group` on the bus `config` names: stops the fan-out to it and deletes
 * its queues or consumer group (see the module comment).
 * @throws {RetireGroupRefusedError} for the default group or a group with live consumers.
 * @example const retired = await retireGroup(loadConfig(process.env, { modules: MODULES }), 'audit-export');
 */
export async function retireGroup(
  config: Config,
  group: string,
  options: RetireGroupOptions = {},
): Promise<RetiredGroup> {
  assertGroupName(group);
  if (group === DEFAULT_GROUP) {
    throw new RetireGroupRefusedError(
      group,
      'default-group',
      `group ${JSON.stringify(group)} is the default group (the read models): it cannot be retired`,
    );
  }
  const settleMs = options.settleMs ?? 5_000;
  switch (config.bus.kind) {
    case 'bullmq':
      return retireBullmqGroup(config, group, settleMs);
    case 'sqs':
      return retireSqsGroup(config, group, settleMs);
    case 'rabbitmq':
      return retireRabbitmqGroup(config, group);
    case 'kafka':
      return retireKafkaGroup(config, group);
  }
}

async function retireBullmqGroup(config: Config, group: string, settleMs: number): Promise<RetiredGroup> {
  const { Queue } = await import('bullmq');
  const prefix = config.redis.queuePrefix;
  const key = bullmqGroupsKey(prefix);
  const connection = createWorkerRedis(
    { url: config.redis.url, clusterNodes: config.redis.clusterNodes, commandTimeoutMs: 0 },
    'conveyor-retire-group',
  );
  const name = bullmqGroupQueue(group);
  const queue = new Queue(name, queueOptions(connection, prefix, name));
  queue.on('error', () => undefined); // the failing call rejects
  try {
    const workers = async () => (await queue.getWorkers()).length;
    const live = await workers();
    if (live > 0) refuseLive(group, `${live} BullMQ worker(s) on ${name}`);
    const unregistered = (await connection.srem(key, group)) > 0;
    await settle(settleMs);
    // A consumer that subscribed meanwhile registered the group again (or runs already): it stays.
    const after = await workers();
    if (after > 0 || (await connection.sismember(key, group)) === 1) {
      if (unregistered) await connection.sadd(key, group);
      refuseLive(group, `${after} BullMQ worker(s) on ${name}, or one subscribing`);
    }
    const kinds = ['meta', 'events', 'wait', 'delayed', 'completed'];
    const existed = (await connection.exists(...kinds.map((t) => queue.toKey(t)))) > 0;
    await queue.obliterate({ force: true });
    return { bus: 'bullmq', group, unregistered, deleted: existed ? [name] : [] };
  } finally {
    await queue.close().catch(() => undefined);
    await connection.quit().catch(() => connection.disconnect());
  }
}

async function retireSqsGroup(config: Config, group: string, settleMs: number): Promise<RetiredGroup> {
  const [{ GetQueueAttributesCommand }, { withSqsClient }, { isQueueMissing }, groups, topology] =
    await Promise.all([
      import('@aws-sdk/client-sqs'),
      import('./sqs/admin.ts'),
      import('./sqs/client.ts'),
      import('./sqs/groups.ts'),
      import('./sqs/topology.ts'),
    ]);
  const sqs = config.bus.sqs;
  const names = topology.groupQueueNames(sqs.queuePrefix, group, sqs.fifo);
  const registry = groups.createRedisGroupRegistry({
    url: config.redis.url,
    key: groups.sqsGroupsKey(config.redis.queuePrefix, sqs.queuePrefix, sqs.fifo),
  });
  try {
    return await withSqsClient({ endpoint: sqs.endpoint, region: sqs.region }, async (client) => {
      /** The queue's URL and messages in flight, or undefined when it does not exist. */
      const inFlight = async (queue: string): Promise<{ url: string; n: number } | undefined> => {
        try {
          const url = await topology.queueUrlOf(client, queue);
          const { Attributes } = await client.send(
            new GetQueueAttributesCommand({
              QueueUrl: url,
              AttributeNames: ['ApproximateNumberOfMessagesNotVisible'],
            }),
          );
          return { url, n: Number(Attributes?.ApproximateNumberOfMessagesNotVisible ?? 0) };
        } catch (err) {
          if (isQueueMissing(err)) return undefined;
          throw err;
        }
      };
      const before = await inFlight(names.queue);
      if (before && before.n > 0) refuseLive(group, `${before.n} message(s) in flight on ${names.queue}`);
      const unregistered = await registry.unregister(group);
      await settle(settleMs);
      const after = await inFlight(names.queue);
      if ((after && after.n > 0) || (await registry.groups()).includes(group)) {
        if (unregistered) await registry.register(group);
        refuseLive(group, `messages in flight on ${names.queue}, or a consumer subscribing`);
      }
      const deleted: string[] = [];
      for (const queue of [names.queue, names.dlq]) if (await inFlight(queue)) deleted.push(queue);
      await topology.deleteGroupQueues(client, names);
      return { bus: 'sqs' as const, group, unregistered, deleted };
    });
  } finally {
    await registry.close();
  }
}

async function retireRabbitmqGroup(config: Config, group: string): Promise<RetiredGroup> {
  const [{ connect }, { rabbitmqTopology }, { groupTopology }] = await Promise.all([
    import('amqplib'),
    import('./rabbitmq/bus.ts'),
    import('./rabbitmq/topology.ts'),
  ]);
  const topology = groupTopology(rabbitmqTopology(rabbitmqSettings(config)), group);
  const model = await connect(config.bus.rabbitmq.url);
  model.on('error', () => undefined); // the failing operation rejects
  /** A fresh channel per operation: a refused one (404 for a missing queue) closes its channel. */
  const onChannel = async <T>(fn: (channel: Channel) => Promise<T>): Promise<T> => {
    const channel = await model.createChannel();
    channel.on('error', () => undefined);
    try {
      return await fn(channel);
    } finally {
      await channel.close().catch(() => undefined);
    }
  };
  const code = (err: unknown) => (err as { code?: unknown }).code;
  const consumers = async (queue: string): Promise<number | undefined> => {
    try {
      return (await onChannel((c) => c.checkQueue(queue))).consumerCount;
    } catch (err) {
      if (code(err) === 404) return undefined;
      throw err;
    }
  };
  try {
    // The consumer of a group reads its work queue and its `undelivered` queue.
    const [work, undelivered] = [await consumers(topology.queue), await consumers(topology.undelivered)];
    const live = (work ?? 0) + (undelivered ?? 0);
    if (live > 0) refuseLive(group, `${live} consumer(s) on ${topology.queue} and ${topology.undelivered}`);
    const deleted: string[] = [];
    // The work queue first: its binding goes with it, so the exchange stops routing to it. Checked
    // again right before (quorum queues refuse `if-unused` deletes, with a connection error).
    if (work !== undefined) {
      const now = (await consumers(topology.queue)) ?? 0;
      if (now > 0) refuseLive(group, `a consumer arrived on ${topology.queue}`);
      await onChannel((c) => c.deleteQueue(topology.queue));
      deleted.push(topology.queue);
    }
    for (const queue of [topology.undelivered, topology.dlq, ...topology.delays.map((d) => d.name)]) {
      if ((await consumers(queue)) === undefined) continue;
      await onChannel((c) => c.deleteQueue(queue));
      deleted.push(queue);
    }
    return { bus: 'rabbitmq', group, unregistered: work !== undefined, deleted };
  } finally {
    await model.close().catch(() => undefined);
  }
}

async function retireKafkaGroup(config: Config, group: string): Promise<RetiredGroup> {
  const [{ Kafka, logLevel }, { kafkaClientOptions }] = await Promise.all([
    import('kafkajs'),
    import('./kafka/connection.ts'),
  ]);
  const kafka = config.bus.kafka;
  // As the Kafka bus names a group's consumer group (kafka-bus.ts `subscribe`).
  const groupId = `${kafka.consumer.groupId}.${group}`;
  const admin = new Kafka({ ...kafkaClientOptions(kafka), logLevel: logLevel.NOTHING }).admin();
  await admin.connect();
  try {
    const { groups } = await admin.describeGroups([groupId]);
    const described = groups.find((g) => g.groupId === groupId);
    if (described && described.members.length > 0)
      refuseLive(group, `${described.members.length} member(s) in consumer group ${groupId}`);
    if (!described || described.state === 'Dead')
      return { bus: 'kafka', group, unregistered: false, deleted: [] };
    try {
      await admin.deleteGroups([groupId]);
    } catch (err) {
      const results = (
        err as { groups?: { groupId: string; errorCode?: number; error?: { type?: string } }[] }
      ).groups;
      const type = results?.find((g) => g.groupId === groupId)?.error?.type;
      if (type === 'NON_EMPTY_GROUP') refuseLive(group, `a member joined consumer group ${groupId}`);
      if (type === 'GROUP_ID_NOT_FOUND') return { bus: 'kafka', group, unregistered: false, deleted: [] };
      throw err;
    }
    return { bus: 'kafka', group, unregistered: true, deleted: [groupId] };
  } finally {
    await admin.disconnect().catch(() => undefined);
  }
}
