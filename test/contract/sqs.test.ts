import { randomUUID } from 'node:crypto';
import {
  GetQueueAttributesCommand,
  ReceiveMessageCommand,
  SendMessageCommand,
  type SQSClient,
} from '@aws-sdk/client-sqs';
import { Redis } from 'ioredis';
import { afterAll, afterEach, beforeEach, describe, expect, it } from 'vitest';
import { encodeEvent } from '../../shared/bus/codec.ts';
import type { EventBus, Subscription } from '../../shared/bus/event-bus.ts';
import {
  createSqsBus,
  sqsGroupQueues,
  sqsMaxReceiveCount,
  type SqsBusConfig,
} from '../../shared/bus/sqs/bus.ts';
import { deleteSqsTopology, peekQueue, withSqsClient } from '../../shared/bus/sqs/admin.ts';
import { sqsGroupsKey } from '../../shared/bus/sqs/groups.ts';
import { eventEntry, headersOf } from '../../shared/bus/sqs/messages.ts';
import {
  chunkEntries,
  MAX_BATCH_BYTES,
  SqsPublishRejectedError,
  sendChunk,
} from '../../shared/bus/sqs/publisher.ts';
import { declareGroupQueues, groupQueueNames, queueUrlOf } from '../../shared/bus/sqs/topology.ts';
import type { Config } from '../../shared/config/config.ts';
import type { Pool } from '../../shared/db/pool.ts';
import { createPgDeadLetterSink } from '../../shared/dead-letters/dead-letter.ts';
import { createDeadLetterStore } from '../../shared/dead-letters/store.ts';
import { createSqsDepthReader } from '../../shared/observability/bus-lag.ts';
import { PROJECTOR_CONSUMER } from '../../workers/projections/projector.ts';
import { ownElasticmq, releaseSqsEndpoint, sqsEndpoint } from '../support/elasticmq-server.ts';
import { dropSchema, eventually, migratedPool, testConfig, testLogger } from '../support/env.ts';
import { describeBusContract, SECOND_GROUP, type BusContractContext } from './bus-contract.ts';
import { placedEvent, recorder } from './contract-events.ts';

// The EventBus contract on a real SQS API (ElasticMQ: the machine's from `npm run brokers`, or a
// private one), once with standard queues and once with FIFO queues, then what is SQS's own: batch
// limits and partial failures, visibility extension, the redrive policy, liveness, queue depths.

const endpoint = await sqsEndpoint();
const region = 'us-east-1';
const target = { endpoint, region };
afterAll(() => releaseSqsEndpoint());

function busConfig(config: Config, fifo: boolean, overrides: Partial<SqsBusConfig> = {}): SqsBusConfig {
  return {
    ...config.bus.sqs,
    endpoint,
    region,
    // Unique per case: the QUEUE_PREFIX of `testConfig()` is.
    queuePrefix: `c-${config.redis.queuePrefix}`,
    fifo,
    prefetch: 20,
    waitTimeSeconds: 1,
    visibilityTimeoutSeconds: 10,
    maxAttempts: config.bus.maxAttempts,
    backoffMs: config.bus.backoffMs,
    snoozeMs: config.bus.snoozeMs,
    snoozeMaxMs: config.bus.snoozeMaxMs,
    redisUrl: config.redis.url,
    redisPrefix: config.redis.queuePrefix,
    shutdownGraceMs: 1_000,
    retryMinMs: 50,
    retryMaxMs: 500,
    ...overrides,
  };
}

/** Deletes a case's queues and its group registry. */
async function cleanupSqs(config: SqsBusConfig): Promise<void> {
  await deleteSqsTopology(target, config, [PROJECTOR_CONSUMER, SECOND_GROUP]);
  const redis = new Redis(config.redisUrl, { maxRetriesPerRequest: 1 });
  try {
    await redis.del(sqsGroupsKey(config.redisPrefix, config.queuePrefix, config.fifo));
  } finally {
    redis.disconnect();
  }
}

describe('queue names', () => {
  it('derives SQS-valid, distinct names for every group name the buses accept', () => {
    const names = ['projections', 'audit', 'a.b', 'a_b', 'x'.repeat(100), `${'x'.repeat(99)}.`];
    for (const fifo of [false, true]) {
      const all = names.map((g) => groupQueueNames('conveyor-events', g, fifo));
      for (const n of all) {
        for (const q of [n.queue, n.dlq]) {
          expect(q).toMatch(fifo ? /^[A-Za-z0-9_-]{1,75}\.fifo$/ : /^[A-Za-z0-9_-]{1,80}$/);
        }
      }
      expect(new Set(all.flatMap((n) => [n.queue, n.dlq])).size).toBe(all.length * 2);
    }
    expect(groupQueueNames('conveyor-events', 'projections', false)).toEqual({
      group: 'projections',
      queue: 'conveyor-events-projections',
      dlq: 'conveyor-events-projections-dlq',
    });
  });
});

/**
 * A group of cases that runs beside the file's other groups, its own cases one after the other. The
 * cases mostly wait on SQS — whole-second delays and visibility timeouts, long polls, a consumer's
 * close — not on the CPU, and each isolates itself by queue prefix and schema, so the groups may
 * overlap; the cases of one group may not, as they share their hooks' state (the contract's `ctx`).
 * Two suites because suites pass `concurrent` down: the outer one runs beside its siblings, the inner
 * one keeps its own cases sequential. Vitest overlaps only adjacent concurrent siblings: keep the
 * groups next to each other (a plain `describe` between them would run them in two waves).
 */
function sideBySide(name: string, cases: () => void): void {
  describe.concurrent(name, () => {
    describe.sequential('one case at a time', cases);
  });
}

for (const fifo of [false, true]) {
  const cfg = (ctx: BusContractContext) => busConfig(ctx.config, fifo);
  sideBySide(fifo ? 'FIFO queues' : 'standard queues', () =>
    describeBusContract(fifo ? 'sqs (FIFO queues)' : 'sqs', async (ctx) => createSqsBus(ctx, cfg(ctx)), {
      // Standard queues: SQS may reorder, and up to `prefetch` handlers run at once. FIFO: a message
      // group (= order id) is handled one message after the other, retries included.
      ordersPerKey: fifo,
      // FIFO: MessageDeduplicationId = event id, so a re-publish within 5 minutes is dropped by SQS.
      dedupesRepublished: fifo,
      // After `shutdownGraceMs` close() hands a hung handler's message back: another consumer takes it.
      closeAbandonsInFlight: true,
      async publishRaw(ctx, body, headers) {
        // A foreign producer: a plain SendMessage, no codec, straight to the projections queue.
        await withSqsClient(target, async (client) => {
          await client.send(
            new SendMessageCommand({
              QueueUrl: await queueUrlOf(client, sqsGroupQueues(cfg(ctx)).queue),
              MessageBody: body.toString('utf8'),
              MessageAttributes: Object.fromEntries(
                Object.entries(headers).map(([k, v]) => [k, { DataType: 'String', StringValue: v }]),
              ),
              ...(fifo ? { MessageGroupId: 'foreign', MessageDeduplicationId: randomUUID() } : {}),
            }),
          );
        });
      },
      async transportDeadLetters(ctx) {
        const messages = await peekQueue(target, sqsGroupQueues(cfg(ctx)).dlq);
        return messages.map((m) => ({ payload: Buffer.from(m.Body ?? '', 'utf8'), headers: headersOf(m) }));
      },
      cleanup: (ctx) => cleanupSqs(cfg(ctx)),
    }),
  );
}

sideBySide('SQS bus specifics', () => {
  let config: Config;
  let pool: Pool;
  let sqsConfig: SqsBusConfig;
  const buses: EventBus[] = [];
  const subs: Subscription[] = [];

  beforeEach(async () => {
    config = testConfig({ BUS_MAX_ATTEMPTS: '3', BUS_BACKOFF_MS: '20' });
    pool = await migratedPool(config);
    sqsConfig = busConfig(config, false);
  });

  afterEach(async () => {
    for (const sub of subs.splice(0).reverse()) await sub.close().catch(() => undefined);
    for (const bus of buses.splice(0).reverse()) await bus.close().catch(() => undefined);
    await cleanupSqs(sqsConfig).catch(() => undefined);
    await dropSchema(pool, config.database.schema);
    await pool.end();
  });

  function newBus(overrides: Partial<SqsBusConfig> = {}, onFatal?: (c: string, e: Error) => void): EventBus {
    const bus = createSqsBus(
      { logger: testLogger(), deadLetters: createPgDeadLetterSink(pool), onFatal },
      { ...sqsConfig, ...overrides },
    );
    buses.push(bus);
    return bus;
  }

  const attributesOf = (client: SQSClient, url: string) =>
    client
      .send(new GetQueueAttributesCommand({ QueueUrl: url, AttributeNames: ['All'] }))
      .then((r) => r.Attributes ?? {});

  it('declares the projections queue and its DLQ with a redrive policy, and converges on new settings', async () => {
    await newBus().start();
    const names = sqsGroupQueues(sqsConfig);
    await withSqsClient(target, async (client) => {
      const [url, dlqUrl] = [await queueUrlOf(client, names.queue), await queueUrlOf(client, names.dlq)];
      const dlqArn = (await attributesOf(client, dlqUrl)).QueueArn;
      const attrs = await attributesOf(client, url);
      expect(attrs.VisibilityTimeout).toBe('10');
      // Above the receive on which the consumer itself records a message whose last attempt crashed
      // (maxAttempts + 1), with room for receives that reach no handler: SQS never moves one first.
      expect(JSON.parse(attrs.RedrivePolicy ?? '{}')).toMatchObject({
        deadLetterTargetArn: dlqArn,
        maxReceiveCount: sqsMaxReceiveCount(3),
      });
      expect(sqsMaxReceiveCount(3)).toBeGreaterThan(4);
      // Another deployment with other limits: SQS refuses the create, the bus updates the queue.
      await newBus({ maxAttempts: 6, visibilityTimeoutSeconds: 20 }).start();
      const after = await attributesOf(client, url);
      expect(after.VisibilityTimeout).toBe('20');
      expect(JSON.parse(after.RedrivePolicy ?? '{}')).toMatchObject({
        maxReceiveCount: sqsMaxReceiveCount(6),
      });
    });
  });

  it('publishes a relay batch as packs of the events’ own bytes, and a lone event as one message', async () => {
    const bus = newBus();
    await bus.start();
    const events = Array.from({ length: 130 }, (_, i) => placedEvent(randomUUID(), 100 + i));
    const lone = placedEvent();
    await bus.publish(events);
    await bus.publish([lone]);
    const messages = await eventually(async () => {
      const all = await peekQueue(target, sqsGroupQueues(sqsConfig).queue);
      return all.length > 0 && all;
    });
    const packs = messages.filter((m) => headersOf(m)['x-pack'] !== undefined);
    // ~0.7 KB per event: 64 KiB packs hold fewer than 100.
    expect(packs.length).toBeGreaterThanOrEqual(2);
    expect(packs.length).toBeLessThan(10);
    for (const p of packs) expect(Buffer.byteLength(p.Body ?? '')).toBeLessThanOrEqual(65_536);
    const packed = packs
      .flatMap((p) => JSON.parse(p.Body ?? '[]') as unknown[])
      .map((e) => JSON.stringify(e));
    expect(packed.sort()).toEqual(events.map((e) => encodeEvent(e).body.toString('utf8')).sort());
    expect(packs.map((p) => Number(headersOf(p)['x-pack'])).reduce((a, b) => a + b, 0)).toBe(130);
    const single = messages.filter((m) => headersOf(m)['x-pack'] === undefined);
    expect(single.map((m) => m.Body)).toEqual([encodeEvent(lone).body.toString('utf8')]);
    expect(headersOf(single[0]!)).toEqual({ ...encodeEvent(lone).headers, 'event-key': lone.key });
  });

  it('cuts batches at 10 entries and 256 KiB, and refuses a message SQS would refuse', () => {
    const events = Array.from({ length: 25 }, () => placedEvent());
    const entries = events.map((e, i) => eventEntry(`e${i}`, e, false));
    expect(chunkEntries('q', entries).map((c) => c.length)).toEqual([10, 10, 5]);
    const big = (id: string, kib: number) => ({ Id: id, MessageBody: 'x'.repeat(kib * 1_024) });
    expect(chunkEntries('q', [big('a', 100), big('b', 100), big('c', 100)]).map((c) => c.length)).toEqual([
      2, 1,
    ]);
    expect(() => chunkEntries('q', [{ Id: 'huge', MessageBody: 'x'.repeat(MAX_BATCH_BYTES + 1) }])).toThrow(
      SqsPublishRejectedError,
    );
  });

  it('resends exactly the entries SQS failed on its side, and fails at once on entries it refuses', async () => {
    await newBus().start();
    const names = sqsGroupQueues(sqsConfig);
    await withSqsClient(target, async (client) => {
      const url = await queueUrlOf(client, names.queue);
      const sent: string[][] = [];
      let failNext = ['e2', 'e7'];
      // What SQS does under throttling: those entries never reach the queue and come back in `Failed`.
      client.middlewareStack.add(
        (next, context) => async (args) => {
          if (context.commandName !== 'SendMessageBatchCommand') return next(args);
          const input = args.input as { Entries: { Id: string }[] };
          const dropped = input.Entries.filter((e) => failNext.includes(e.Id));
          const kept = { ...input, Entries: input.Entries.filter((e) => !failNext.includes(e.Id)) };
          failNext = [];
          sent.push(kept.Entries.map((e) => e.Id));
          const result = await next({ ...args, input: kept } as typeof args);
          const output = result.output as { Failed?: unknown[] };
          output.Failed = [
            ...(output.Failed ?? []),
            ...dropped.map((e) => ({ Id: e.Id, SenderFault: false, Code: 'InternalError' })),
          ];
          return result;
        },
        { step: 'initialize', name: 'dropEntries' },
      );
      const events = Array.from({ length: 10 }, () => placedEvent());
      await sendChunk(
        client,
        url,
        events.map((e, i) => eventEntry(`e${i}`, e, false)),
        { retryBaseMs: 5 },
      );
      expect(sent).toEqual([
        ['e0', 'e1', 'e3', 'e4', 'e5', 'e6', 'e8', 'e9'],
        ['e2', 'e7'],
      ]);
      // Every event exactly once in the queue.
      const got = await eventually(async () => {
        const { Messages = [] } = await client.send(
          new ReceiveMessageCommand({ QueueUrl: url, MaxNumberOfMessages: 10, WaitTimeSeconds: 1 }),
        );
        return Messages.length === 10 && Messages;
      });
      expect(new Set(got.map((m) => JSON.parse(m.Body ?? '{}').eventId as string))).toEqual(
        new Set(events.map((e) => e.eventId)),
      );

      // An entry SQS refuses (invalid characters) is not retried: the publish fails with what SQS said.
      sent.length = 0;
      const invalid = { Id: 'bad', MessageBody: 'not \u0000 valid' };
      await expect(sendChunk(client, url, [invalid], { retryBaseMs: 5 })).rejects.toThrow(
        SqsPublishRejectedError,
      );
      expect(sent).toEqual([['bad']]);
    });
  });

  it('extends the visibility of a message whose handler outlasts the visibility timeout: no redelivery meanwhile', async () => {
    const bus = newBus({ visibilityTimeoutSeconds: 2 });
    await bus.start();
    const slow = recorder(async () => {
      // The work itself takes 3× the visibility timeout.
      await new Promise((r) => setTimeout(r, 6_000));
    });
    const other = recorder();
    subs.push(await bus.subscribe(PROJECTOR_CONSUMER, slow.handler));
    const event = placedEvent();
    await bus.publish([event]);
    await eventually(() => slow.of(event.eventId).length > 0, { what: 'the first delivery' });
    // A second member of the group polls all along: it would get the message were it visible again.
    subs.push(await newBus({ visibilityTimeoutSeconds: 2 }).subscribe(PROJECTOR_CONSUMER, other.handler));
    const url = await withSqsClient(target, (c) => queueUrlOf(c, sqsGroupQueues(sqsConfig).queue));
    await eventually(
      async () => {
        const a = await withSqsClient(target, (c) => attributesOf(c, url));
        return a.ApproximateNumberOfMessages === '0' && a.ApproximateNumberOfMessagesNotVisible === '0';
      },
      { timeoutMs: 30_000, what: 'the message deleted after the slow handler' },
    );
    expect(slow.of(event.eventId).map((r) => r.delivery.attempt)).toEqual([1]);
    expect(other.received).toEqual([]);
  });

  it('dead-letters, without running the handler, a message whose last attempt never finished (the consumer crashed)', async () => {
    const bus = newBus();
    await bus.start();
    const event = placedEvent();
    await bus.publish([event]);
    const url = await withSqsClient(target, (c) => queueUrlOf(c, sqsGroupQueues(sqsConfig).queue));
    // Three consumers "crash" on it: received three times, never deleted (visibility 0: back at once).
    for (let i = 1; i <= config.bus.maxAttempts; i++) {
      await withSqsClient(target, async (c) => {
        const { Messages = [] } = await c.send(
          new ReceiveMessageCommand({ QueueUrl: url, WaitTimeSeconds: 1, VisibilityTimeout: 0 }),
        );
        expect(Messages).toHaveLength(1);
      });
    }
    const rec = recorder();
    subs.push(await bus.subscribe(PROJECTOR_CONSUMER, rec.handler));
    const [dl] = await eventually(async () => {
      const all = await createDeadLetterStore(pool).list({ limit: 10 });
      return all.length > 0 && all;
    });
    expect(dl).toMatchObject({
      transport: 'sqs',
      origin: sqsGroupQueues(sqsConfig).queue,
      attempts: config.bus.maxAttempts,
      payload: encodeEvent(event).body,
      subjectId: event.key,
    });
    expect(dl?.error).toMatch(/last attempt never finished/);
    expect(rec.received).toEqual([]);
    const inDlq = await peekQueue(target, sqsGroupQueues(sqsConfig).dlq);
    expect(inDlq.map((m) => headersOf(m)['x-attempts'])).toEqual([String(config.bus.maxAttempts)]);
  });

  /** Messages of `queue` visible, in flight and delayed: all zero once the consumer is done with it. */
  async function drained(queue: string): Promise<boolean> {
    return withSqsClient(target, async (client) => {
      const a = await attributesOf(client, await queueUrlOf(client, queue));
      return (
        a.ApproximateNumberOfMessages === '0' &&
        a.ApproximateNumberOfMessagesNotVisible === '0' &&
        a.ApproximateNumberOfMessagesDelayed === '0'
      );
    });
  }

  for (const fifo of [false, true]) {
    const queues = fifo ? 'FIFO' : 'standard';

    it(`snoozes an event whose dependency is unreachable without consuming an attempt, however often (${queues} queue)`, async () => {
      sqsConfig = busConfig(config, fifo);
      // Far more deliveries than maxAttempts (3) — and than SQS's own redrive limit would allow a
      // message handed back by visibility: each snooze is a copy (standard) or waits in place (FIFO).
      const bus = newBus({ snoozeMs: 20, snoozeMaxMs: 100 });
      await bus.start();
      const applied: string[] = [];
      let refused = 0;
      const rec = recorder(async (e) => {
        if (refused < 8) {
          refused++;
          throw Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:5432'), { code: 'ECONNREFUSED' });
        }
        applied.push(e.eventId);
      });
      subs.push(await bus.subscribe(PROJECTOR_CONSUMER, rec.handler));
      const event = placedEvent();
      await bus.publish([event]);

      await eventually(() => applied.length > 0, { timeoutMs: 60_000, what: 'the event applied' });
      const names = sqsGroupQueues(sqsConfig);
      await eventually(() => drained(names.queue), { what: 'the queue drained' });
      expect(applied).toEqual([event.eventId]);
      expect(rec.of(event.eventId).map((r) => r.delivery.attempt)).toEqual(
        Array.from({ length: 9 }, () => 1),
      );
      expect(await createDeadLetterStore(pool).list({ limit: 10 })).toEqual([]);
      expect(await peekQueue(target, names.dlq)).toEqual([]);
    });

    it(`parks a dead letter whose record fails: nothing in the DLQ before its row, then one row and one DLQ copy (${queues} queue)`, async () => {
      sqsConfig = busConfig(config, fifo);
      const bus = newBus({ snoozeMs: 50, snoozeMaxMs: 200 });
      await bus.start();
      const rec = recorder(async (_e, d) => {
        throw new Error(`hopeless on attempt ${d.attempt}`);
      });
      const names = sqsGroupQueues(sqsConfig);
      // The dead-letter table is gone: every record fails (not an outage, but the fallback fails too).
      await pool.query('ALTER TABLE dead_letters RENAME TO dead_letters_away');
      let away = true;
      try {
        subs.push(await bus.subscribe(PROJECTOR_CONSUMER, rec.handler));
        const event = placedEvent();
        await bus.publish([event]);
        // Parked on its last attempt, which is tried once more on each redelivery.
        await eventually(() => rec.of(event.eventId).filter((r) => r.delivery.attempt === 3).length >= 3, {
          timeoutMs: 60_000,
          what: 'the last attempt tried again after parks',
        });
        expect(await peekQueue(target, names.dlq)).toEqual([]);
        await pool.query('ALTER TABLE dead_letters_away RENAME TO dead_letters');
        away = false;

        const [dl] = await eventually(async () => {
          const all = await createDeadLetterStore(pool).list({ limit: 10 });
          return all.length > 0 && all;
        });
        await eventually(() => drained(names.queue), { what: 'the queue drained' });
        const attempts = rec.of(event.eventId).map((r) => r.delivery.attempt);
        expect(attempts.slice(0, 3)).toEqual([1, 2, 3]);
        expect(attempts.slice(3).every((a) => a === 3)).toBe(true);
        expect(await createDeadLetterStore(pool).list({ limit: 10 })).toHaveLength(1);
        expect(dl).toMatchObject({
          transport: 'sqs',
          origin: names.queue,
          attempts: 3,
          subjectId: event.key,
          payload: encodeEvent(event).body,
        });
        expect(dl?.id).toBe(`sqs-${names.queue}-${event.eventId}`);
        expect(dl?.error).toMatch(/hopeless on attempt 3/);
        const inDlq = await eventually(async () => {
          const all = await peekQueue(target, names.dlq);
          return all.length > 0 && all;
        });
        expect(inDlq.map((m) => m.Body)).toEqual([encodeEvent(event).body.toString('utf8')]);
      } finally {
        if (away) await pool.query('ALTER TABLE dead_letters_away RENAME TO dead_letters');
      }
    });
  }

  it('splits a pack’s snoozed events out as copies that keep their attempt, and retried ones with the next', async () => {
    const bus = newBus({ snoozeMs: 20, snoozeMaxMs: 100 });
    await bus.start();
    const events = Array.from({ length: 6 }, (_, i) => placedEvent(randomUUID(), 100 + i));
    const [snoozed, retried] = [events[1]!, events[4]!];
    const rec = recorder(async (e, d) => {
      if (e.eventId === snoozed.eventId && rec.of(e.eventId).length <= 2)
        throw Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' });
      if (e.eventId === retried.eventId && d.attempt < 3) throw new Error('transient');
    });
    subs.push(await bus.subscribe(PROJECTOR_CONSUMER, rec.handler));
    await bus.publish(events);
    await eventually(() => rec.of(snoozed.eventId).length >= 3 && rec.of(retried.eventId).length >= 3, {
      timeoutMs: 30_000,
      what: 'both events through',
    });
    await eventually(() => drained(sqsGroupQueues(sqsConfig).queue), { what: 'the queue drained' });
    expect(rec.of(snoozed.eventId).map((r) => r.delivery.attempt)).toEqual([1, 1, 1]);
    expect(rec.of(retried.eventId).map((r) => r.delivery.attempt)).toEqual([1, 2, 3]);
    for (const e of events.filter((x) => x !== snoozed && x !== retried))
      expect(rec.of(e.eventId)).toHaveLength(1);
    expect(await createDeadLetterStore(pool).list({ limit: 10 })).toEqual([]);
  });

  it('declares a group queue deleted under a running consumer again, and keeps consuming', async () => {
    const bus = newBus();
    await bus.start();
    const rec = recorder();
    subs.push(await bus.subscribe(PROJECTOR_CONSUMER, rec.handler));
    await deleteSqsTopology(target, sqsConfig, [PROJECTOR_CONSUMER]);
    const event = placedEvent();
    // The first publish after the deletion may meet the missing queue; the relay would publish again.
    await eventually(
      async () => {
        await bus.publish([event]);
        return true;
      },
      { what: 'a publish to the declared-again queue' },
    );
    // ElasticMQ never answers a long poll on a queue deleted under it: the consumer's request times out
    // (10 s) before it receives from the new queue.
    await eventually(() => rec.of(event.eventId).length > 0, {
      timeoutMs: 40_000,
      what: 'the event on the new queue',
    });
  });

  it('reports onFatal when SQS stays unreachable past the recovery budget', async () => {
    const own = await ownElasticmq();
    try {
      const fatal: { component: string; err: Error }[] = [];
      const bus = newBus({ endpoint: own.endpoint, recoveryBudgetMs: 1_500 }, (component, err) =>
        fatal.push({ component, err }),
      );
      await bus.start();
      const rec = recorder();
      subs.push(await bus.subscribe(PROJECTOR_CONSUMER, rec.handler));
      await own.stop('SIGKILL');
      const [report] = await eventually(() => fatal.length > 0 && fatal, {
        timeoutMs: 30_000,
        what: 'the fatal report',
      });
      expect(report?.component).toMatch(/^sqs consumer /);
      expect(report?.err.message).toMatch(/could not receive from SQS for 1500 ms/);
    } finally {
      await own.destroy();
    }
  });

  it('reads visible, in-flight and delayed counts per queue for the metrics', async () => {
    const bus = newBus();
    await bus.start();
    // Three lone events: three messages (a multi-event publish would be one pack).
    for (let i = 0; i < 3; i++) await bus.publish([placedEvent()]);
    const names = sqsGroupQueues(sqsConfig);
    const reader = createSqsDepthReader({
      endpoint,
      region,
      queues: [names.queue, names.dlq, 'missing-queue'],
    });
    try {
      const depths = await eventually(async () => {
        const d = await reader.read();
        return d.find((q) => q.queue === names.queue)?.visible === 3 && d;
      });
      expect(depths).toEqual([
        { queue: names.queue, visible: 3, inFlight: 0, delayed: 0 },
        { queue: names.dlq, visible: 0, inFlight: 0, delayed: 0 },
      ]);
    } finally {
      await reader.close();
    }
  });

  it('declares FIFO queues, where SQS drops an event re-published within the deduplication window', async () => {
    sqsConfig = busConfig(config, true);
    const bus = newBus();
    await bus.start();
    const names = sqsGroupQueues(sqsConfig);
    expect(names.queue).toMatch(/\.fifo$/);
    await withSqsClient(target, async (client) => {
      const attrs = await attributesOf(client, await queueUrlOf(client, names.queue));
      expect(attrs.FifoQueue).toBe('true');
    });
    // The same events twice within the deduplication window: SQS keeps one copy of each.
    const events = [placedEvent(), placedEvent()];
    await bus.publish(events);
    await bus.publish(events);
    const declared = await withSqsClient(target, (c) =>
      declareGroupQueues(c, names, { fifo: true, visibilityTimeoutSeconds: 10, maxReceiveCount: 4 }),
    );
    await eventually(async () => {
      const a = await withSqsClient(target, (c) => attributesOf(c, declared.queueUrl));
      return a.ApproximateNumberOfMessages === '2';
    });
  });
});
