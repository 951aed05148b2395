import { randomUUID } from 'node:crypto';
import { InvalidMessageContents, QueueDoesNotExist, SQSServiceException } from '@aws-sdk/client-sqs';
import {
  Kafka,
  KafkaJSAggregateError,
  KafkaJSConnectionError,
  KafkaJSNonRetriableError,
  KafkaJSProtocolError,
  logLevel,
  type ConfigResourceTypes,
} from 'kafkajs';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createEventBus } from '../../shared/bus/create-bus.ts';
import type { EventBus, Subscription } from '../../shared/bus/event-bus.ts';
import { kafkaTopics } from '../../shared/bus/kafka/headers.ts';
import { ChannelClosedError } from '../../shared/bus/rabbitmq/confirm.ts';
import { deleteSqsTopology } from '../../shared/bus/sqs/admin.ts';
import { SqsPublishRejectedError } from '../../shared/bus/sqs/publisher.ts';
import type { Config } from '../../shared/config/config.ts';
import { insertOutbox } from '../../shared/db/outbox.sql.ts';
import { withTransaction, type Pool } from '../../shared/db/pool.ts';
import { createPgDeadLetterSink } from '../../shared/dead-letters/dead-letter.ts';
import { createDeadLetterStore } from '../../shared/dead-letters/store.ts';
import { deadLetterId } from '../../shared/delivery/dead-letter.ts';
import { eventOfOutboxDeadLetter, isRefusedForGood, OUTBOX_ORIGIN } from '../../shared/delivery/refusal.ts';
import type { EventEnvelope } from '../../shared/domain/events.ts';
import { createRelay, type Relay } from '../../workers/outbox/relay.ts';
import { createProjector } from '../../workers/projections/projector.ts';
import { placedEvent } from '../contract/contract-events.ts';
import { releaseSqsEndpoint, sqsEndpoint } from '../support/elasticmq-server.ts';
import { dropSchema, eventually, migratedPool, testConfig, testLogger } from '../support/env.ts';
import { request, sampleOrder } from '../support/http.ts';
import { startPlatform, type Platform } from '../support/platform.ts';

// Issue #19: an event a broker refuses for good (SQS: U+FFFF in the body; Kafka: a record over the
// topic's max.message.bytes) used to block the outbox for good — the relay retried the oldest batch
// forever and nothing behind it was published. Now the relay isolates it into the dead letters
// (origin `outbox`) and the events behind it flow; a transient failure is still retried, never
// quarantined. The API refuses such text at the edge, so these tests write the outbox directly.

const GROUP = 'projections';

interface Case {
  config: Config;
  pool: Pool;
  bus: EventBus;
  relay?: Relay;
  sub?: Subscription;
  /** Event ids the subscriber received. */
  received: Set<string>;
}

async function setUp(config: Config): Promise<Case> {
  const pool = await migratedPool(config);
  const bus = await createEventBus(
    config.bus.kind,
    { logger: testLogger(), deadLetters: createPgDeadLetterSink(pool) },
    config,
  );
  await bus.start();
  const received = new Set<string>();
  // The real projector: the orders behind the refused event must reach the read models.
  const projector = createProjector({ pool, logger: testLogger(), batchSize: 50, batchWaitMs: 5 });
  const sub = await bus.subscribe(GROUP, async (event, delivery) => {
    received.add(event.eventId);
    await projector.handle(event, delivery);
  });
  return { config, pool, bus, sub, received };
}

function startRelay(c: Case, bus: EventBus = c.bus): Relay {
  c.relay = createRelay(
    { pool: c.pool, bus, logger: testLogger() },
    {
      databaseUrl: c.config.database.url,
      schema: c.config.database.schema,
      batchSize: 100,
      pollIntervalMs: 200,
    },
  );
  return c.relay;
}

async function tearDown(c: Case | undefined): Promise<void> {
  if (!c) return;
  await c.relay?.close();
  await c.sub?.close().catch(() => undefined);
  await c.bus.close().catch(() => undefined);
  await dropSchema(c.pool, c.config.database.schema);
  await c.pool.end();
}

async function writeOutbox(pool: Pool, events: readonly EventEnvelope[]): Promise<void> {
  // One transaction per event, like the command workers: ids in this order.
  for (const event of events) await withTransaction(pool, (client) => insertOutbox(client, [event]));
}

/** A refund event whose free-text reason the API would now refuse. */
function refundWith(reason: string): EventEnvelope {
  const orderId = randomUUID();
  return {
    eventId: randomUUID(),
    type: 'refund.completed',
    version: 1,
    key: orderId,
    correlationId: `corr-${randomUUID()}`,
    occurredAt: new Date().toISOString(),
    payload: { refundId: randomUUID(), orderId, amountCents: 100, reason },
  };
}

async function outboxState(pool: Pool) {
  const { rows } = await pool.query<{ event_id: string; published: boolean; quarantined: boolean }>(
    `SELECT event_id, published_at IS NOT NULL AS published, quarantined_at IS NOT NULL AS quarantined
       FROM outbox ORDER BY id`,
  );
  return rows;
}

/** The refused event is a dead letter of origin `outbox`; every other one reached the subscriber. */
async function expectQuarantined(c: Case, refused: EventEnvelope, ordinary: readonly EventEnvelope[]) {
  const keys = ordinary.map((e) => e.key);
  await eventually(
    async () => {
      const { rows } = await c.pool.query<{ n: number }>(
        `SELECT count(*)::int AS n FROM order_view WHERE order_id = ANY($1::uuid[]) AND status = 'completed'`,
        [keys],
      );
      return rows[0]!.n === ordinary.length;
    },
    { timeoutMs: 60_000, what: 'every order behind the refused event in the read model' },
  );
  expect(ordinary.every((e) => c.received.has(e.eventId))).toBe(true);
  const rows = await outboxState(c.pool);
  expect(rows.filter((r) => !r.published)).toEqual([]);
  expect(rows.filter((r) => r.quarantined).map((r) => r.event_id)).toEqual([refused.eventId]);

  const id = deadLetterId({ transport: c.bus.kind, origin: OUTBOX_ORIGIN, messageId: refused.eventId });
  const dl = await createDeadLetterStore(c.pool).get(id);
  expect(dl).toMatchObject({
    id,
    transport: c.bus.kind,
    origin: 'outbox',
    kind: 'event',
    status: 'pending',
    messageKey: refused.eventId,
    subjectId: refused.key,
    correlationId: refused.correlationId,
  });
  expect(dl!.error).toMatch(new RegExp(`^refused by ${c.bus.kind} for good: `));
  // The payload is the envelope as the bus encodes it: what a redrive publishes.
  expect(eventOfOutboxDeadLetter(dl!)).toEqual(refused);
  const { rows: all } = await c.pool.query('SELECT id FROM dead_letters');
  expect(all.map((r) => r.id)).toEqual([id]);
  expect(c.received.has(refused.eventId)).toBe(false);
  return dl!;
}

/** A bus whose publishes are counted, failed ones kept: to see the relay retry. */
function counting(bus: EventBus): { bus: EventBus; failures: unknown[] } {
  const failures: unknown[] = [];
  return {
    failures,
    bus: {
      ...bus,
      kind: bus.kind,
      start: () => bus.start(),
      publish: async (events) => {
        try {
          await bus.publish(events);
        } catch (err) {
          failures.push(err);
          throw err;
        }
      },
      close: () => bus.close(),
    },
  };
}

/** A transient failure is retried with backoff, and nothing is quarantined. */
async function expectRetriedNotQuarantined(c: Case, broken: EventBus): Promise<void> {
  const events = [placedEvent(), placedEvent()];
  await writeOutbox(c.pool, events);
  const watched = counting(broken);
  startRelay(c, watched.bus);
  await eventually(() => watched.failures.length >= 3, { timeoutMs: 30_000, what: 'three failed publishes' });
  await c.relay!.close();
  const rows = await outboxState(c.pool);
  expect(rows.map((r) => [r.published, r.quarantined])).toEqual([
    [false, false],
    [false, false],
  ]);
  const { rows: dls } = await c.pool.query('SELECT id FROM dead_letters');
  expect(dls).toEqual([]);
}

describe('outbox relay quarantine on SQS (ElasticMQ)', () => {
  let endpoint: string;
  let c: Case | undefined;
  beforeAll(async () => {
    endpoint = await sqsEndpoint();
  });
  afterAll(() => releaseSqsEndpoint());
  const sqsConfig = () =>
    testConfig({ EVENT_BUS: 'sqs', SQS_ENDPOINT: endpoint, SQS_WAIT_TIME_SECONDS: '1' });
  afterEach(async () => {
    const config = c?.config;
    await tearDown(c);
    c = undefined;
    if (config) await deleteSqsTopology({ endpoint, region: config.bus.sqs.region }, config.bus.sqs, [GROUP]);
  });

  it.each([
    ['U+FFFF', '\uffff'],
    ['U+FFFE', 'damaged \ufffe'],
  ])(
    'dead-letters a refund whose reason holds %s (SQS refuses it), and publishes the 50 events behind it',
    async (_name, reason) => {
      c = await setUp(sqsConfig());
      const refused = refundWith(reason);
      const ordinary = Array.from({ length: 50 }, () => placedEvent());
      await writeOutbox(c.pool, [refused, ...ordinary]);
      startRelay(c);
      await expectQuarantined(c, refused, ordinary);
    },
    90_000,
  );

  it('retries a publish to an unreachable SQS endpoint with backoff, and quarantines nothing', async () => {
    c = await setUp(sqsConfig());
    const unreachable = await createEventBus(
      'sqs',
      { logger: testLogger(), deadLetters: createPgDeadLetterSink(c.pool) },
      testConfig({ EVENT_BUS: 'sqs', SQS_ENDPOINT: 'http://127.0.0.1:9', SQS_QUEUE_PREFIX: 'unreachable' }),
    );
    try {
      await expectRetriedNotQuarantined(c, unreachable);
    } finally {
      await unreachable.close();
    }
  }, 60_000);
});

describe('outbox relay quarantine on Kafka', () => {
  let c: Case | undefined;
  const MAX_MESSAGE_BYTES = 16_384;

  async function admin<T>(config: Config, fn: (a: ReturnType<Kafka['admin']>) => Promise<T>): Promise<T> {
    const a = new Kafka({ brokers: [...config.bus.kafka.brokers], logLevel: logLevel.NOTHING }).admin();
    await a.connect();
    try {
      return await fn(a);
    } finally {
      await a.disconnect();
    }
  }

  /** The events topic made before the bus starts (which then leaves it as it is): 16 kB records at most. */
  async function smallTopicConfig(): Promise<Config> {
    const config = testConfig({ EVENT_BUS: 'kafka', KAFKA_PARTITIONS: '3' });
    await admin(config, (a) =>
      a.createTopics({
        topics: [
          {
            topic: config.bus.kafka.topic,
            numPartitions: 3,
            configEntries: [{ name: 'max.message.bytes', value: String(MAX_MESSAGE_BYTES) }],
          },
        ],
      }),
    );
    return config;
  }

  afterEach(async () => {
    const config = c?.config;
    await tearDown(c);
    c = undefined;
    if (!config) return;
    const t = kafkaTopics(config.bus.kafka.topic);
    await admin(config, async (a) => {
      await a.deleteTopics({ topics: [t.events, t.retry, t.dlq] }).catch(() => undefined);
      await a.deleteGroups([config.bus.kafka.consumer.groupId]).catch(() => undefined);
    });
  });

  it('dead-letters an event over the topic’s max.message.bytes (MESSAGE_TOO_LARGE), publishes the 50 behind it, and a redrive after raising the limit publishes it', async () => {
    c = await setUp(await smallTopicConfig());
    const refused = placedEvent();
    refused.payload.note = 'x'.repeat(MAX_MESSAGE_BYTES * 2);
    const ordinary = Array.from({ length: 50 }, () => placedEvent());
    await writeOutbox(c.pool, [refused, ...ordinary]);
    startRelay(c);
    const dl = await expectQuarantined(c, refused, ordinary);
    expect(dl.error).toMatch(/larger than the max message size/);

    // The operator's fix, then what a redrive of an `outbox` dead letter does: publish the event.
    await admin(c.config, (a) =>
      a.alterConfigs({
        validateOnly: false,
        resources: [
          {
            type: 2 as ConfigResourceTypes, // TOPIC (a type-only enum in kafkajs' ESM typings)
            name: c!.config.bus.kafka.topic,
            configEntries: [{ name: 'max.message.bytes', value: String(MAX_MESSAGE_BYTES * 8) }],
          },
        ],
      }),
    );
    const cc = c;
    await eventually(
      async () => {
        await cc.bus.publish([eventOfOutboxDeadLetter(dl)]);
        return true;
      },
      { timeoutMs: 30_000, intervalMs: 500, what: 'the broker taking the raised limit' },
    );
    await eventually(() => cc.received.has(refused.eventId), { what: 'the redriven event delivered' });
  }, 120_000);

  it('retries a publish on a closed bus with backoff, and quarantines nothing', async () => {
    c = await setUp(testConfig({ EVENT_BUS: 'kafka', KAFKA_PARTITIONS: '1' }));
    const closed = await createEventBus(
      'kafka',
      { logger: testLogger(), deadLetters: createPgDeadLetterSink(c.pool) },
      c.config,
    );
    await closed.start();
    await closed.close();
    await expectRetriedNotQuarantined(c, closed);
  }, 60_000);
});

describe('the API refuses free text no store or broker can carry', () => {
  let platform: Platform;
  beforeAll(async () => {
    platform = await startPlatform(testConfig(), { workers: [] });
  });
  afterAll(async () => {
    await platform?.close();
  });

  it.each([
    ['\uffff', 'U+FFFF', /no supported broker can carry/],
    ['bad \ufffe', 'U+FFFE', /no supported broker can carry/],
    ['nul \u0000 here', 'U+0000', /PostgreSQL cannot store/],
    ['half \ud800 pair', 'U+D800', /surrogate/],
    ['\ufdd0', 'U+FDD0', /noncharacter/],
    ['\u{10ffff}', 'U+10FFFF', /noncharacter/],
  ])('a refund reason %j: 400 problem+json naming the field and %s', async (reason, name, why) => {
    const res = await request(`${platform.url}/v1/orders/${randomUUID()}/refunds`, {
      method: 'POST',
      json: { amountCents: 100, reason },
    });
    expect(res.status).toBe(400);
    expect(res.headers.get('content-type')).toMatch(/^application\/problem\+json/);
    const errors = res.body.errors as { path: string; message: string }[];
    expect(errors).toHaveLength(1);
    expect(errors[0]!.path).toBe('reason');
    expect(errors[0]!.message).toContain(name);
    expect(errors[0]!.message).toMatch(why);
  });

  it('still accepts text in any script, emoji, tabs and newlines (checked before the order is looked up: 404)', async () => {
    const res = await request(`${platform.url}/v1/orders/${randomUUID()}/refunds`, {
      method: 'POST',
      json: { amountCents: 100, reason: 'Ware beschädigt 😞\tzweimal\nгрязный 壊れた' },
    });
    expect(res.status).toBe(404);
  });

  it('orders keep refusing what their id fields never allowed', async () => {
    const res = await request(`${platform.url}/v1/orders`, {
      method: 'POST',
      json: sampleOrder({ customerId: 'c-\uffff' }),
    });
    expect(res.status).toBe(400);
    expect((res.body.errors as { path: string }[]).map((e) => e.path)).toEqual(['customerId']);
  });
});

describe('isRefusedForGood: the client libraries’ error shapes', () => {
  const $metadata = { httpStatusCode: 400 };
  const kafka = (type: string, code: number, retriable = false) =>
    new KafkaJSProtocolError({ type, code, retriable, message: `broker said ${type}` } as never);
  // amqplib's channel `error` when RabbitMQ closes a channel over max_message_size (rabbit_channel).
  const amqp406 = Object.assign(
    new Error(
      'Channel closed by server: 406 (PRECONDITION-FAILED) with message "PRECONDITION_FAILED - message size 200 is larger than configured max size 100"',
    ),
    { code: 406, classId: 60, methodId: 40 },
  );

  it.each([
    ['SQS InvalidMessageContents', new InvalidMessageContents({ message: 'bad', $metadata })],
    [
      'SQS InvalidParameterValue (a message too long)',
      new SQSServiceException({ name: 'InvalidParameterValue', $fault: 'client', $metadata }),
    ],
    [
      'ElasticMQ refusing U+FFFF',
      new SQSServiceException({
        name: 'InvalidAction',
        $fault: 'client',
        $metadata,
        message: 'Invalid request: MalformedRequestContentRejection(Unexpected end-of-input',
      }),
    ],
    [
      'an SQS batch entry refused (SenderFault)',
      new SqsPublishRejectedError('q', [
        { Id: 'e0', SenderFault: true, Code: 'InvalidAttributeValue', Message: 'InvalidMessageContents' },
      ]),
    ],
    ['kafkajs MESSAGE_TOO_LARGE', kafka('MESSAGE_TOO_LARGE', 10)],
    ['kafkajs INVALID_RECORD', kafka('INVALID_RECORD', 87)],
    [
      'MESSAGE_TOO_LARGE wrapped as kafkajs bails',
      // What kafkajs' retrier rejects with: `new KafkaJSNonRetriableError(e, { cause: e.cause || e })`
      // (its typings know only the first argument).
      new (KafkaJSNonRetriableError as unknown as new (e: Error, o: { cause: Error }) => Error)(
        kafka('MESSAGE_TOO_LARGE', 10),
        { cause: kafka('MESSAGE_TOO_LARGE', 10) },
      ),
    ],
    [
      'RECORD_LIST_TOO_LARGE in an aggregate',
      new KafkaJSAggregateError('send failed', [kafka('RECORD_LIST_TOO_LARGE', 18)]),
    ],
    ['RabbitMQ 406 over max size', amqp406],
    ['RabbitMQ 406 as the cause of a closed channel', new ChannelClosedError(amqp406)],
  ])('%s: refused for good', (_name, err) => {
    expect(isRefusedForGood(err)).toBe(true);
  });

  it.each([
    ['SQS QueueDoesNotExist', new QueueDoesNotExist({ message: 'gone', $metadata })],
    ['SQS AccessDenied', new SQSServiceException({ name: 'AccessDenied', $fault: 'client', $metadata })],
    [
      'SQS throttling',
      Object.assign(new SQSServiceException({ name: 'RequestThrottled', $fault: 'client', $metadata }), {
        $retryable: { throttling: true },
      }),
    ],
    [
      'an SQS batch entry failed on its side',
      new SqsPublishRejectedError('q', [{ Id: 'e0', SenderFault: false, Code: 'InternalError' }]),
    ],
    [
      'an SQS batch entry refused for KMS',
      new SqsPublishRejectedError('q', [{ Id: 'e0', SenderFault: true, Code: 'KmsAccessDenied' }]),
    ],
    ['kafkajs NOT_LEADER_FOR_PARTITION', kafka('NOT_LEADER_FOR_PARTITION', 6, true)],
    ['kafkajs connection error', new KafkaJSConnectionError('Connection error: connect ECONNREFUSED')],
    ['RabbitMQ channel closed without a reason', new ChannelClosedError()],
    [
      'RabbitMQ 406 for a mismatched declare',
      Object.assign(new Error('PRECONDITION_FAILED - inequivalent arg'), { code: 406 }),
    ],
    ['a socket refused', Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' })],
    ['not an error', 'MESSAGE_TOO_LARGE'],
  ])('%s: not refused for good', (_name, err) => {
    expect(isRefusedForGood(err)).toBe(false);
  });
});
