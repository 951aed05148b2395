/**
 * The AWS SQS event bus (`@aws-sdk/client-sqs` v3; locally ElasticMQ, which speaks the SQS API).
 *
 * Topology (declared idempotently: `start()` for the default group, `subscribe()` for the others):
 * - `<prefix>-<group>` per subscription group, with `VisibilityTimeout` and a redrive policy into
 *   - `<prefix>-<group>-dlq`, the broker-side dead letters (our copies carry `x-error`, `x-attempts`,
 *     `x-origin-queue`); every one we dead-letter is also recorded in the dead-letter sink.
 *   With `fifo`, both are FIFO queues (`.fifo`), in high-throughput mode (per message group).
 *   A queue that exists with other attributes is updated (visibility timeout, redrive policy).
 *
 * Fan-out: SQS queues have no exchange or topic in front of them, so the bus sends every event to the
 * queue of each subscription group — the default group's always, and every group in a registry that
 * `subscribe` adds to before consuming (a Redis set, read once per publish: see sqs/groups.ts for why
 * not SQS's own ListQueues). A group gets what is published once its registration is done (no replay).
 * Redrives and retries stay within a group's queue, so they never reach another group.
 *
 * Packs: on standard queues a publish of several events (the relay's batches) sends them as packs —
 * one message holding up to 100 events and 64 KiB, the JSON array of their bodies — because SQS costs
 * per request, on the bill and in CPU (ElasticMQ's, the SDK's): 500 events become one SendMessageBatch
 * call, a few receives and deletes, instead of fifty of each. Per-event semantics survive: the consumer
 * hands each event to the handler as if alone, and an event that fails is split out into a message of
 * its own (carrying its attempt and snoozes) before the pack is deleted; only it is retried, snoozed
 * or dead-lettered. A lone event is one message, as is every event on FIFO queues.
 *
 * Guarantees:
 * - Publish: SendMessageBatch calls of ≤ 10 entries and ≤ 256 KiB; resolves only once SQS confirmed
 *   every entry of every group's queue. Entries SQS failed on its side are sent again, exactly those;
 *   an entry it refuses, or one still failing after the retries, rejects the publish: the outbox relay
 *   retries, the consumers' idempotence absorbs the duplicates. FIFO: MessageGroupId = event key (the
 *   order id), MessageDeduplicationId = event id, one group queue's chunks sent in sequence.
 * - At-least-once delivery: a message is deleted only after its handler resolved, after its
 *   copy was confirmed (a snooze, a split-out), or after its dead letter was recorded and copied to the DLQ; visibility is extended while the handler still works.
 *   A crash leaves it invisible until its visibility timeout, then SQS delivers it again.
 * - Ordering: standard queues none (SQS may reorder, and handlers run concurrently); FIFO per key:
 *   one consumer handles a message group's messages one after the other, retries included.
 * - Failures are decided by the delivery core (shared/delivery), one per group queue; the consumer is
 *   its adapter (sqs/consumer.ts). Attempts are SQS's receive count plus the attempts a copy carries
 *   (`x-prior-attempts`: an event split out of a pack, a snoozed or parked message, sent again so a
 *   snooze costs no attempt and no receive), plus in-place retries on FIFO. The redrive policy's
 *   `maxReceiveCount` ({@link sqsMaxReceiveCount}) leaves the consumer room to dead-letter — and
 *   record — every message before SQS would move one by itself.
 */
import { SendMessageCommand, type SendMessageBatchRequestEntry, type SQSClient } from '@aws-sdk/client-sqs';
import { randomUUID } from 'node:crypto';
import type { DeadLetterRecord } from '../../dead-letters/dead-letter.ts';
import { createDeliveryCore } from '../../delivery/core.ts';
import type { DeliveryPolicy } from '../../delivery/policy.ts';
import { EventHeaders } from '../codec.ts';
import type { BusDeps } from '../create-bus.ts';
import { assertGroupName, type EventBus, type EventHandler, type Subscription } from '../event-bus.ts';
import { createSqsClient, isQueueMissing } from './client.ts';
import { createSqsConsumer, type SqsConsumer } from './consumer.ts';
import { createRedisGroupRegistry, sqsGroupsKey, type GroupRegistry } from './groups.ts';
import { eventEntry, originalHeaders, packEntries, SqsHeaders, toAttributes } from './messages.ts';
import { chunkEntries, runLimited, sendChunk } from './publisher.ts';
import { declareGroupQueues, groupQueueNames, queueUrlOf, type GroupQueueNames } from './topology.ts';

export { SqsPublishIncompleteError, SqsPublishRejectedError } from './publisher.ts';
export { SqsHeaders } from './messages.ts';

export interface SqsBusConfig {
  /** SQS API endpoint (ElasticMQ locally, `https://sqs.<region>.amazonaws.com` on AWS). */
  endpoint: string;
  region: string;
  /** Queues are `<queuePrefix>-<group>` and `<queuePrefix>-<group>-dlq`. */
  queuePrefix: string;
  /** FIFO queues: per-key order, deduplication by event id. */
  fifo: boolean;
  /** Messages one consumer holds at once. */
  prefetch: number;
  /** Long-poll wait of a ReceiveMessage (0–20 s, at most half of `shutdownGraceMs`): close() waits for the last polls. */
  waitTimeSeconds: number;
  visibilityTimeoutSeconds: number;
  maxAttempts: number;
  /** First retry delay; doubles per attempt up to `maxBackoffMs` (whole seconds on standard queues). */
  backoffMs: number;
  /** First snooze delay (a dependency outage; no attempt consumed), doubling up to `snoozeMaxMs`. @defaultValue 1_000 */
  snoozeMs?: number;
  /** @defaultValue 30_000 */
  snoozeMaxMs?: number;
  /** Redis of the group registry (see sqs/groups.ts) and the prefix of its key. */
  redisUrl: string;
  redisPrefix: string;
  /** The group whose queue `start()` declares, so events published before it subscribes are kept. @defaultValue 'projections' */
  defaultGroup?: string;
  /** @defaultValue 60_000 */
  maxBackoffMs?: number;
  /** How long close() waits for in-flight handlers. @defaultValue 10_000 */
  shutdownGraceMs?: number;
  /** How long a consumer may keep failing to receive before it gives up (`onFatal`). @defaultValue 300_000 */
  recoveryBudgetMs?: number;
  /** Backoff of a consumer's failed receives and dead-letter tries. @defaultValue 100 and 5_000 */
  retryMinMs?: number;
  retryMaxMs?: number;
  /** SendMessageBatch calls in flight per publish (standard queues). @defaultValue 8 */
  publishConcurrency?: number;
}

/** Publish, subscribe or redrive on a closed bus. */
export class SqsBusClosedError extends Error {
  override readonly name = 'SqsBusClosedError';
  constructor() {
    super('the SQS bus is closed');
  }
}

const DEFAULT_GROUP = 'projections';

/**
 * Receives that reach no handler, allowed beyond the one our consumer needs to record a message
 * whose last attempt crashed: a close() handing back messages it held but never started, a long
 * poll cut at close or a consumer killed before it read the answer. See {@link sqsMaxReceiveCount}.
 */
const RECEIVES_WITHOUT_ATTEMPT = 10;

/**
 * The redrive policy's `maxReceiveCount` for `maxAttempts`. SQS moves a message to the DLQ by itself
 * — without a `dead_letters` row — on the receive after this many, so it must never come before ours:
 * a message is received at most `maxAttempts` times as attempts (snoozes and parks are copies whose
 * receive count starts again, carrying their attempt; FIFO hand-backs never leave the consumer), and
 * on the receive after, the consumer dead-letters it through the delivery core without running the
 * handler. The broker's move is only a backstop for a message no consumer can ever settle, after
 * {@link RECEIVES_WITHOUT_ATTEMPT} lost receives on top.
 */
export function sqsMaxReceiveCount(maxAttempts: number): number {
  return maxAttempts + 1 + RECEIVES_WITHOUT_ATTEMPT;
}

/** The queue names of `group` on a bus with `config` (for metrics, KEDA, tests and teardown). */
export function sqsGroupQueues(
  config: Pick<SqsBusConfig, 'queuePrefix' | 'fifo'>,
  group: string = DEFAULT_GROUP,
): GroupQueueNames {
  return groupQueueNames(config.queuePrefix, group, config.fifo);
}

/**
 * Creates the SQS {@link EventBus}: one SQS client (HTTP keep-alive pool) for publishing, consuming
 * and redriving; Redis only for the group registry, connected on first use.
 * @example
 * const bus = createSqsBus(deps, { ...config.bus.sqs, maxAttempts: 5, backoffMs: 500, redisUrl, redisPrefix: 'conveyor' });
 * await bus.start();
 * const sub = await bus.subscribe('projections', projector.handle);
 */
export function createSqsBus(deps: BusDeps, config: SqsBusConfig): EventBus {
  const defaultGroup = config.defaultGroup ?? DEFAULT_GROUP;
  const log = deps.logger.child({ component: 'sqs-bus', queuePrefix: config.queuePrefix });
  const client: SQSClient = createSqsClient({
    endpoint: config.endpoint,
    region: config.region,
    // Every poller holds a connection for its long poll; publishes and deletes need their own.
    maxSockets: 32 + 2 * Math.ceil(config.prefetch / 10),
    // A long poll answers within its wait time; a request past it (+ slack) hangs on a lost link.
    requestTimeoutMs: Math.max(10, config.waitTimeSeconds + 5) * 1_000,
  });
  const registry: GroupRegistry = createRedisGroupRegistry({
    url: config.redisUrl,
    key: sqsGroupsKey(config.redisPrefix, config.queuePrefix, config.fifo),
  });
  const policy: DeliveryPolicy = {
    maxAttempts: config.maxAttempts,
    backoffMs: config.backoffMs,
    backoffMaxMs: config.maxBackoffMs ?? 60_000,
    snoozeMs: config.snoozeMs,
    snoozeMaxMs: config.snoozeMaxMs,
  };
  const declareOptions = {
    fifo: config.fifo,
    visibilityTimeoutSeconds: config.visibilityTimeoutSeconds,
    maxReceiveCount: sqsMaxReceiveCount(config.maxAttempts),
  };
  /** Queue URL per queue name, resolved once (declared by `start`/`subscribe`, looked up for others). */
  const urls = new Map<string, Promise<string>>();
  const consumers = new Set<SqsConsumer>();
  let starting: Promise<void> | undefined;
  let closing: Promise<void> | undefined;

  const declare = async (group: string) => {
    const queues = await declareGroupQueues(client, sqsGroupQueues(config, group), declareOptions);
    urls.set(queues.queue, Promise.resolve(queues.queueUrl));
    return queues;
  };

  /** The URL of a group queue; one a publish cannot find (deleted, or registered elsewhere) is declared. */
  function urlOf(group: string): Promise<string> {
    const { queue } = sqsGroupQueues(config, group);
    let url = urls.get(queue);
    if (!url) {
      url = declare(group).then((q) => q.queueUrl);
      url.catch(() => urls.delete(queue));
      urls.set(queue, url);
    }
    return url;
  }

  function start(): Promise<void> {
    if (closing) return Promise.reject(new SqsBusClosedError());
    starting ??= declare(defaultGroup).then(
      (q) => log.info({ queue: q.queue, dlq: q.dlq, fifo: config.fifo }, 'sqs bus started'),
      (err: unknown) => {
        starting = undefined; // a later call may try again
        throw err;
      },
    );
    return starting;
  }

  async function sendAll(queueUrl: string, entries: SendMessageBatchRequestEntry[]): Promise<void> {
    const chunks = chunkEntries(queueUrl, entries);
    const tasks = chunks.map((chunk) => () => sendChunk(client, queueUrl, chunk));
    // FIFO: one chunk after the other, so a message group's order survives across chunks.
    await runLimited(tasks, config.fifo ? 1 : (config.publishConcurrency ?? 8));
  }

  return {
    kind: 'sqs',
    start,

    async publish(events) {
      if (closing) throw new SqsBusClosedError();
      if (events.length === 0) return;
      await start();
      const groups = new Set([defaultGroup, ...(await registry.groups())]);
      // FIFO: one message per event (its key is the message group). Standard: packs (sqs/messages.ts).
      const entries = config.fifo ? events.map((e, i) => eventEntry(`e${i}`, e, true)) : packEntries(events);
      await Promise.all(
        [...groups].map(async (group) => {
          try {
            await sendAll(await urlOf(group), entries);
          } catch (err) {
            // Deleted under us: forget its URL, so the next publish (the relay's retry) declares it again.
            if (isQueueMissing(err)) urls.delete(sqsGroupQueues(config, group).queue);
            throw err;
          }
        }),
      );
    },

    async subscribe(group: string, handler: EventHandler): Promise<Subscription> {
      if (closing) throw new SqsBusClosedError();
      assertGroupName(group);
      await start();
      // Queue first, then the registration: a publisher that sees the group finds its queue.
      const { queue } = sqsGroupQueues(config, group);
      const consumerLog = log.child({ queue, group });
      const consumer = createSqsConsumer({
        client,
        declare: () => declare(group),
        fifo: config.fifo,
        handler,
        // One delivery core per group queue: every decision about a failure is its, not the consumer's.
        core: createDeliveryCore(
          { sink: deps.deadLetters, logger: consumerLog, onVerdict: deps.onVerdict },
          policy,
          queue,
        ),
        log: consumerLog,
        prefetch: config.prefetch,
        waitTimeSeconds: config.waitTimeSeconds,
        visibilityTimeoutSeconds: config.visibilityTimeoutSeconds,
        shutdownGraceMs: config.shutdownGraceMs ?? 10_000,
        retryMinMs: config.retryMinMs ?? 100,
        retryMaxMs: config.retryMaxMs ?? 5_000,
        recoveryBudgetMs: config.recoveryBudgetMs ?? 300_000,
        onFatal: deps.onFatal,
      });
      await consumer.start();
      consumers.add(consumer);
      try {
        if (group !== defaultGroup) await registry.register(group);
      } catch (err) {
        consumers.delete(consumer);
        await consumer.close();
        throw err;
      }
      return {
        close: async () => {
          await consumer.close();
          consumers.delete(consumer);
        },
      };
    },

    async redrive(dl: DeadLetterRecord) {
      if (closing) throw new SqsBusClosedError();
      if (dl.transport !== 'sqs') throw new Error(`dead letter ${dl.id} came from ${dl.transport}, not sqs`);
      const headers = originalHeaders(dl.headers);
      const queueUrl = await (urls.get(dl.origin) ?? queueUrlOf(client, dl.origin));
      // Straight to the origin queue: the group that dead-lettered it alone gets it again.
      await client.send(
        new SendMessageCommand({
          QueueUrl: queueUrl,
          MessageBody: dl.payload.toString('utf8'),
          MessageAttributes: toAttributes(headers),
          ...(config.fifo
            ? {
                MessageGroupId: headers[SqsHeaders.key] ?? dl.subjectId ?? dl.id,
                // A new message: the original's deduplication id may still be within SQS's window.
                MessageDeduplicationId: randomUUID(),
              }
            : {}),
        }),
      );
      log.info(
        { deadLetterId: dl.id, origin: dl.origin, correlationId: headers[EventHeaders.correlationId] },
        'dead letter redriven',
      );
    },

    close() {
      closing ??= (async () => {
        for (const consumer of [...consumers].reverse()) {
          await consumer
            .close()
            .catch((err: unknown) => log.error({ err }, 'closing an sqs consumer failed'));
        }
        await registry.close();
        client.destroy();
      })();
      return closing;
    },
  };
}
