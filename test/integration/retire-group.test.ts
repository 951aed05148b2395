import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { GetQueueAttributesCommand } from '@aws-sdk/client-sqs';
import { Redis } from 'ioredis';
import { Kafka, logLevel } from 'kafkajs';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { bullmqGroupsKey } from '../../shared/bus/bullmq/bus.ts';
import { createEventBus, rabbitmqSettings } from '../../shared/bus/create-bus.ts';
import type { EventBus, Subscription } from '../../shared/bus/event-bus.ts';
import { kafkaClientOptions } from '../../shared/bus/kafka/connection.ts';
import { kafkaTopics } from '../../shared/bus/kafka/headers.ts';
import { rabbitmqTopology } from '../../shared/bus/rabbitmq/bus.ts';
import { deleteRabbitmqTopology, withAmqpChannel } from '../../shared/bus/rabbitmq/admin.ts';
import { groupTopology } from '../../shared/bus/rabbitmq/topology.ts';
import { retireGroup, type RetireGroupRefusedError } from '../../shared/bus/retire-group.ts';
import { deleteSqsTopology, withSqsClient } from '../../shared/bus/sqs/admin.ts';
import { isQueueMissing } from '../../shared/bus/sqs/client.ts';
import { sqsGroupsKey } from '../../shared/bus/sqs/groups.ts';
import { groupQueueNames, queueUrlOf } from '../../shared/bus/sqs/topology.ts';
import { loadConfig, type Config } from '../../shared/config/config.ts';
import type { DeadLetterSink } from '../../shared/dead-letters/dead-letter.ts';
import { placedEvent } from '../contract/contract-events.ts';
import { releaseSqsEndpoint, sqsEndpoint } from '../support/elasticmq-server.ts';
import { eventually, isolatedEnv, TEST_REDIS_URL, testLogger } from '../support/env.ts';
import { MODULES } from '../../modules/registry.ts';

// Issue #20: a subscription group nobody consumes any more can be retired — the fan-out to it stops
// and its queue (consumer group) is deleted — on every bus; never the default group, never a group
// whose consumers still run.

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const GROUP = 'retired-audit';
const redis = new Redis(TEST_REDIS_URL, { maxRetriesPerRequest: 1 });
const cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const fn of cleanups.splice(0).reverse()) await fn().catch(() => undefined);
});
afterAll(async () => {
  await redis.quit();
  await releaseSqsEndpoint();
});

// The handlers never fail: nothing is dead-lettered.
const sink: DeadLetterSink = {
  record: () => Promise.reject(new Error('no dead letter expected')),
};

async function busOf(config: Config): Promise<EventBus> {
  const bus = await createEventBus(config.bus.kind, { logger: testLogger(), deadLetters: sink }, config);
  cleanups.push(() => bus.close());
  await bus.start();
  return bus;
}

/** A consumer of {@link GROUP} that counts what it gets; `hold` keeps handlers from finishing. */
async function consumer(bus: EventBus, hold?: Promise<void>) {
  const got: string[] = [];
  const sub: Subscription = await bus.subscribe(GROUP, async (event) => {
    got.push(event.eventId);
    await hold;
  });
  cleanups.push(() => sub.close());
  return { got, sub };
}

/** Runs `npm run groups:retire -- <args>` as the operator would (`node --import tsx scripts/retire-group.ts`). */
function retireCommand(
  args: string[],
  env: Record<string, string>,
): Promise<{ code: number | null; output: string }> {
  const child = spawn(process.execPath, ['--import', 'tsx', 'scripts/retire-group.ts', ...args], {
    cwd: ROOT,
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout.on('data', (b: Buffer) => (output += b.toString('utf8')));
  child.stderr.on('data', (b: Buffer) => (output += b.toString('utf8')));
  return new Promise((resolve) => child.once('close', (code) => resolve({ code, output })));
}

const refusedFor = (reason: RetireGroupRefusedError['reason']) =>
  expect.objectContaining({ name: 'RetireGroupRefusedError', reason });

describe('retiring a subscription group', () => {
  it('BullMQ: refuses live workers and the default group, then stops the fan-out and obliterates the queue', async () => {
    const env = isolatedEnv({ EVENT_BUS: 'bullmq' });
    const config = loadConfig(env, { modules: MODULES });
    const prefix = config.redis.queuePrefix;
    const queueKeys = () => redis.keys(`${prefix}:events.${GROUP}:*`);
    cleanups.push(async () => {
      const keys = await redis.keys(`${prefix}:*`);
      if (keys.length > 0) await redis.del(...keys);
    });
    const bus = await busOf(config);
    const { got, sub } = await consumer(bus);
    await bus.publish([placedEvent()]);
    await eventually(() => got.length === 1, { what: 'the group to get an event' });

    await expect(retireGroup(config, GROUP, { settleMs: 0 })).rejects.toEqual(refusedFor('live-consumers'));
    await expect(retireGroup(config, 'projections', { settleMs: 0 })).rejects.toEqual(
      refusedFor('default-group'),
    );
    expect(await redis.sismember(bullmqGroupsKey(prefix), GROUP)).toBe(1);

    // Its consumers gone, the group still collects every publish (a durable subscription)…
    await sub.close();
    await bus.publish([placedEvent()]);
    expect((await queueKeys()).length).toBeGreaterThan(0);

    // …until it is retired, with the operator's command.
    const defaultGroup = await retireCommand(['projections', '--settle-ms=0'], env);
    expect(defaultGroup.code).toBe(1);
    expect(defaultGroup.output).toContain('is the default group');
    const retired = await retireCommand([GROUP, '--settle-ms=0'], env);
    expect(retired).toEqual({
      code: 0,
      output: `group ${GROUP} retired on bullmq: publishes no longer reach it; deleted events.${GROUP}\n`,
    });
    expect(await redis.sismember(bullmqGroupsKey(prefix), GROUP)).toBe(0);
    expect(await queueKeys()).toEqual([]);

    // Publishes no longer fan out to it; the default group's queue still gets them.
    await bus.publish([placedEvent()]);
    expect(await queueKeys()).toEqual([]);
    expect(await redis.exists(`${prefix}:events:meta`)).toBe(1);
  });

  it('SQS: refuses while messages are in flight, then unregisters the group and deletes its queues', async () => {
    const endpoint = await sqsEndpoint();
    const config = loadConfig(
      isolatedEnv({ EVENT_BUS: 'sqs', SQS_ENDPOINT: endpoint, SQS_WAIT_TIME_SECONDS: '1' }),
      { modules: MODULES },
    );
    const sqs = config.bus.sqs;
    const target = { endpoint, region: sqs.region };
    const names = groupQueueNames(sqs.queuePrefix, GROUP, sqs.fifo);
    const key = sqsGroupsKey(config.redis.queuePrefix, sqs.queuePrefix, sqs.fifo);
    cleanups.push(async () => {
      await deleteSqsTopology(target, sqs, ['projections', GROUP]);
      await redis.del(key);
    });
    /** Messages of `queue` received and not yet deleted; undefined when the queue does not exist. */
    const inFlight = (queue: string) =>
      withSqsClient(target, async (client) => {
        try {
          const { Attributes } = await client.send(
            new GetQueueAttributesCommand({
              QueueUrl: await queueUrlOf(client, queue),
              AttributeNames: ['ApproximateNumberOfMessagesNotVisible'],
            }),
          );
          return Number(Attributes?.ApproximateNumberOfMessagesNotVisible ?? 0);
        } catch (err) {
          if (isQueueMissing(err)) return undefined;
          throw err;
        }
      });

    const bus = await busOf(config);
    let release: () => void = () => undefined;
    const hold = new Promise<void>((resolve) => (release = resolve));
    const { got, sub } = await consumer(bus, hold);
    await bus.publish([placedEvent()]);
    await eventually(() => got.length === 1, { what: 'the group to get an event' });

    // SQS cannot list consumers: a message being handled is what gives one away.
    await expect(retireGroup(config, GROUP, { settleMs: 0 })).rejects.toEqual(refusedFor('live-consumers'));
    expect(await redis.sismember(key, GROUP)).toBe(1);
    release();
    await sub.close();
    await eventually(async () => (await inFlight(names.queue)) === 0, { what: 'the message to be deleted' });

    const result = await retireGroup(config, GROUP, { settleMs: 0 });
    expect(result).toEqual({
      bus: 'sqs',
      group: GROUP,
      unregistered: true,
      deleted: [names.queue, names.dlq],
    });
    expect(await redis.sismember(key, GROUP)).toBe(0);
    // Publishes no longer fan out to it (nor declare its queue again).
    await bus.publish([placedEvent()]);
    expect(await inFlight(names.queue)).toBeUndefined();
    expect(await inFlight(names.dlq)).toBeUndefined();
  });

  it('RabbitMQ: refuses a queue with consumers, then deletes the queues of the group (its binding too)', async () => {
    const config = loadConfig(isolatedEnv({ EVENT_BUS: 'rabbitmq' }), { modules: MODULES });
    const url = config.bus.rabbitmq.url;
    const settings = rabbitmqTopology(rabbitmqSettings(config));
    const topology = groupTopology(settings, GROUP);
    cleanups.push(() => deleteRabbitmqTopology(url, settings, ['projections', GROUP]));
    const exists = (queue: string) =>
      withAmqpChannel(url, (c) => c.checkQueue(queue)).then(
        () => true,
        (err: unknown) => {
          if ((err as { code?: unknown }).code === 404) return false;
          throw err;
        },
      );

    const bus = await busOf(config);
    const { got, sub } = await consumer(bus);
    await bus.publish([placedEvent()]);
    await eventually(() => got.length === 1, { what: 'the group to get an event' });
    await expect(retireGroup(config, GROUP, { settleMs: 0 })).rejects.toEqual(refusedFor('live-consumers'));
    await expect(retireGroup(config, 'projections', { settleMs: 0 })).rejects.toEqual(
      refusedFor('default-group'),
    );
    expect(await exists(topology.queue)).toBe(true);

    await sub.close();
    await bus.publish([placedEvent()]); // kept for the group while none consumes
    const result = await retireGroup(config, GROUP, { settleMs: 0 });
    expect(result).toEqual({
      bus: 'rabbitmq',
      group: GROUP,
      unregistered: true,
      deleted: [topology.queue, topology.undelivered, topology.dlq, ...topology.delays.map((d) => d.name)],
    });
    for (const queue of result.deleted) expect(await exists(queue)).toBe(false);
    await bus.publish([placedEvent()]);
    expect(await exists(topology.queue)).toBe(false);
    expect(await exists(config.bus.rabbitmq.queue)).toBe(true);
  });

  it('Kafka: refuses a consumer group with members, then deletes it', async () => {
    const config = loadConfig(
      isolatedEnv({ EVENT_BUS: 'kafka', KAFKA_PARTITIONS: '1', KAFKA_SESSION_TIMEOUT_MS: '6000' }),
      { modules: MODULES },
    );
    const kafka = config.bus.kafka;
    const groupId = `${kafka.consumer.groupId}.${GROUP}`;
    const admin = new Kafka({ ...kafkaClientOptions(kafka), logLevel: logLevel.NOTHING }).admin();
    await admin.connect();
    cleanups.push(async () => {
      const t = kafkaTopics(kafka.topic);
      await admin.deleteTopics({ topics: [t.events, t.retry, t.dlq] }).catch(() => undefined);
      await admin.deleteGroups([kafka.consumer.groupId, groupId]).catch(() => undefined);
      await admin.disconnect();
    });
    const stateOf = async () => (await admin.describeGroups([groupId])).groups[0]?.state;

    const bus = await busOf(config);
    const { got, sub } = await consumer(bus);
    await bus.publish([placedEvent()]);
    await eventually(() => got.length === 1, { timeoutMs: 45_000, what: 'the group to get an event' });
    await expect(retireGroup(config, GROUP, { settleMs: 0 })).rejects.toEqual(refusedFor('live-consumers'));
    expect(await stateOf()).toBe('Stable');

    await sub.close();
    await eventually(async () => (await stateOf()) === 'Empty', { what: 'the group to have no members' });
    const result = await retireGroup(config, GROUP, { settleMs: 0 });
    expect(result).toEqual({ bus: 'kafka', group: GROUP, unregistered: true, deleted: [groupId] });
    expect(await stateOf()).toBe('Dead');
  });
});
