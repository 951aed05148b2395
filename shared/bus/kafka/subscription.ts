import type { EachBatchPayload, Kafka, KafkaMessage, Message } from 'kafkajs';
import type { DeadLetterSink, NewDeadLetter } from '../../dead-letters/dead-letter.ts';
import { createDeliveryCore, type DeliveryCoreDeps, type Inbound } from '../../delivery/core.ts';
import { deadLetterId } from '../../delivery/dead-letter.ts';
import { classify, type Outcome } from '../../delivery/outcome.ts';
import type { EventEnvelope } from '../../domain/events.ts';
import type { Logger } from '../../observability/logger.ts';
import { carrierFromHeaders } from '../../observability/tracing/trace-context.ts';
import { asError, fatalOrLog, type OnFatal } from '../../runtime/lifecycle.ts';
import { decodeEvent, EventHeaders } from '../codec.ts';
import type { EventHandler, Subscription } from '../event-bus.ts';
import {
  attemptOf,
  deadLetterCopyHeaders,
  firstFailedAtOf,
  isForGroup,
  KafkaHeaders,
  messageIdOf,
  nextOffset,
  notBeforeOf,
  originOf,
  ownHeaders,
  readHeaders,
  retryCopyHeaders,
  type KafkaTopics,
} from './headers.ts';
import { createPartitionProgress } from './progress.ts';

/** Consumer knobs of one subscription; see `KafkaBusConfig`. */
export interface KafkaSubscriptionConfig {
  groupId: string;
  /** Part of this group's dead-letter ids (see `deadLetterId`); undefined for the default group. */
  deadLetterScope?: string | undefined;
  sessionTimeout: number;
  maxBytesPerPartition: number;
  partitionsConsumedConcurrently: number;
  maxWaitTimeMs: number;
  maxInFlightPerPartition: number;
  maxAttempts: number;
  backoffMs: number;
  backoffMaxMs: number;
  /** First snooze delay (a dependency outage: the partition is held, no attempt consumed). @defaultValue 1_000 */
  snoozeMs?: number | undefined;
  /** @defaultValue 30_000 */
  snoozeMaxMs?: number | undefined;
  shutdownGraceMs: number;
  joinTimeoutMs: number;
  /**
   * How long the consumer may keep crashing (kafkajs restarts it after retriable errors, forever) with
   * no successful fetch in between before it is given up for dead and `onFatal` hears why.
   */
  recoveryBudgetMs: number;
}

export interface KafkaSubscriptionDeps {
  kafka: Kafka;
  topics: KafkaTopics;
  handler: EventHandler;
  /** Produces durably (acks = all); resolves once the broker confirmed. */
  send(topic: string, messages: Message[]): Promise<void>;
  deadLetters: DeadLetterSink;
  /** Told each verdict carried out (metrics). */
  onVerdict?: DeliveryCoreDeps['onVerdict'];
  logger: Logger;
  /** Told when the consumer stopped for good (see {@link startKafkaSubscription}). Absent: logged only. */
  onFatal?: OnFatal | undefined;
}

/** How long a partition rests after a failure could not be handed back (the broker is down). */
const INFRA_RETRY_MS = 1_000;

/** How one message of a batch ended: done (its offset may be committed), or held for `holdMs`. */
type Settled = { done: true } | { done: false; holdMs: number };
const DONE: Settled = { done: true };

class AbortedError extends Error {
  override readonly name = 'AbortedError';
}

/** A tiny semaphore bounding handlers in flight per batch. */
function createLimiter(max: number) {
  let active = 0;
  const waiting: (() => void)[] = [];
  return async <T>(fn: () => Promise<T>): Promise<T> => {
    if (active >= max) await new Promise<void>((r) => waiting.push(r));
    active++;
    try {
      return await fn();
    } finally {
      active--;
      waiting.shift()?.();
    }
  };
}

/**
 * One consumer-group member reading the events topic and its retry topic: a transport adapter of the
 * delivery core (`shared/delivery`), which decides what every failure means. The adapter offers it:
 * - `ack`: the message is done — its offset is committed once every message before it is done too
 *   (offsets are committed by hand, only for the contiguous done prefix of a batch);
 * - `handBack` as a retry: a copy on `<topic>.retry` (`x-attempt` = the next attempt, `x-not-before`
 *   = when it is due), written before the original counts as done;
 * - `handBack` as a snooze (a dependency outage) or a park (a dead letter that could not be
 *   recorded): the partition is held — the message is not done, its offset is not committed, the
 *   partition is paused for the delay and fetched again from that offset. Nothing is copied, no
 *   attempt is consumed, per-key order holds, and the snooze count is kept in memory (see
 *   `progress.ts`) so the delay grows;
 * - `copyToDeadLetters`: a copy on `<topic>.dlq`, after the core recorded the row.
 * Resolves once the member has joined the group, so nothing races the first assignment.
 *
 * kafkajs restarts a crashed consumer only after a retriable error, and then forever: a subscribed
 * topic deleted, for one, crashes it every 100 ms for good. So a crash streak (crashes with no
 * successful fetch between them) may last `recoveryBudgetMs`; past it — or at once on a crash
 * kafkajs does not restart (a non-retriable error) — the consumer is stopped and `onFatal` is told
 * (before the group was joined, `subscribe` rejects with the crash instead).
 */
export async function startKafkaSubscription(
  deps: KafkaSubscriptionDeps,
  config: KafkaSubscriptionConfig,
): Promise<Subscription> {
  const { topics } = deps;
  const log = deps.logger.child({ component: 'kafka-subscription', groupId: config.groupId });
  const onFatal = fatalOrLog(deps.onFatal, log);
  /** Start of the current crash streak; cleared by every successful fetch. */
  let crashingSince: number | undefined;
  const consumer = deps.kafka.consumer({
    groupId: config.groupId,
    sessionTimeout: config.sessionTimeout,
    heartbeatInterval: Math.max(500, Math.floor(config.sessionTimeout / 4)),
    maxBytesPerPartition: config.maxBytesPerPartition,
    maxWaitTimeInMs: config.maxWaitTimeMs,
    // Transactional publishes are read only once committed (also kafkajs's default).
    readUncommitted: false,
    allowAutoTopicCreation: false,
    // kafkajs asks this (after a retriable crash only) whether to restart: within the budget, yes.
    retry: {
      retries: 5,
      restartOnFailure: async () => {
        crashingSince ??= Date.now();
        return Date.now() - crashingSince < config.recoveryBudgetMs;
      },
    },
  });
  let stopping = false;
  let aborted = false;
  let abort!: () => void;
  const abortedSignal = new Promise<void>((r) => (abort = r));
  const resumeTimers = new Set<NodeJS.Timeout>();

  const core = createDeliveryCore(
    { sink: deps.deadLetters, logger: deps.logger, onVerdict: deps.onVerdict },
    {
      maxAttempts: config.maxAttempts,
      backoffMs: config.backoffMs,
      backoffMaxMs: config.backoffMaxMs,
      snoozeMs: config.snoozeMs,
      snoozeMaxMs: config.snoozeMaxMs,
    },
    `${topics.events}/${config.groupId}`,
  );
  const progress = createPartitionProgress();

  /** The message as the delivery core sees it, with this adapter's primitives. */
  function inbound(
    topic: string,
    partition: number,
    m: KafkaMessage,
    headers: Record<string, string>,
    event: EventEnvelope | undefined,
    failure: Error | undefined,
  ): { message: Inbound; settled: () => Settled } {
    const origin = originOf(headers, { topic, partition, offset: m.offset });
    let settled: Settled | undefined;
    const message: Inbound = {
      state: { attempt: attemptOf(headers), snoozes: progress.snoozesOf(topic, partition, m.offset) },
      log: {
        groupId: config.groupId,
        topic,
        partition,
        offset: m.offset,
        eventId: headers[EventHeaders.eventId] ?? event?.eventId,
        correlationId: headers[EventHeaders.correlationId] ?? event?.correlationId,
      },
      deadLetter(error, attempts): NewDeadLetter {
        const own = ownHeaders(headers);
        return {
          id: deadLetterId({
            transport: 'kafka',
            origin: origin.topic,
            scope: config.deadLetterScope,
            messageId: messageIdOf(headers, m.value, event?.eventId),
          }),
          transport: 'kafka',
          origin: origin.topic,
          kind: 'event',
          messageKey: m.key?.toString('utf8') ?? null,
          payload: m.value ?? Buffer.alloc(0),
          // The group travels with the dead letter: a redrive goes back to this group only.
          headers: { ...own, [KafkaHeaders.group]: config.groupId },
          error: error.message,
          stack: error.stack ?? null,
          attempts,
          correlationId: own[EventHeaders.correlationId] ?? event?.correlationId ?? null,
          subjectId: event?.key ?? null,
          firstFailedAt: firstFailedAtOf(headers),
        };
      },
      actions: {
        ack: () => {
          settled = DONE;
          return Promise.resolve();
        },
        async handBack(delayMs, next, why) {
          if (why === 'snooze') {
            // Held: not done, so its offset stays uncommitted and the partition is fetched from it again.
            progress.snoozed(topic, partition, m.offset, next.snoozes);
            settled = { done: false, holdMs: delayMs };
            return;
          }
          await deps.send(topics.retry, [
            {
              key: m.key,
              value: m.value,
              headers: retryCopyHeaders(headers, {
                origin,
                groupId: config.groupId,
                attempt: next.attempt,
                notBefore: Date.now() + delayMs,
                error: failure?.message ?? '',
              }),
            },
          ]);
          settled = DONE;
        },
        async copyToDeadLetters(record) {
          await deps.send(topics.dlq, [
            {
              key: m.key,
              value: m.value,
              headers: deadLetterCopyHeaders(record.headers, {
                origin,
                error: record.error,
                attempts: record.attempts,
              }),
            },
          ]);
        },
      },
    };
    // A verdict always ends in ack or handBack; a failure of either escapes `settle` instead.
    return { message, settled: () => settled ?? { done: false, holdMs: INFRA_RETRY_MS } };
  }

  /** Handles one message and carries out the core's verdict; throws only when it could not be handed back. */
  async function processMessage(topic: string, partition: number, m: KafkaMessage): Promise<Settled> {
    const headers = readHeaders(m.headers);
    if (!isForGroup(headers, config.groupId)) return DONE; // another group's retry or redrive: done here
    // Done while an earlier message held the partition: the refetch from the held offset skips it.
    if (progress.isDone(topic, partition, m.offset)) return DONE;
    let event: EventEnvelope | undefined;
    let outcome: Outcome;
    try {
      event = decodeEvent(m.value);
      await deps.handler(event, {
        attempt: attemptOf(headers),
        transport: 'kafka',
        trace: carrierFromHeaders(headers),
      });
      outcome = { kind: 'done' };
    } catch (err) {
      // Past the shutdown deadline the offset stays uncommitted: the next member redelivers it.
      if (aborted) throw new AbortedError('subscription closed past its grace period');
      outcome =
        event === undefined
          ? { kind: 'poison', error: asError(err) } // the bytes are not an event: never retried
          : classify(err === undefined ? new Error('handler threw undefined') : err);
    }
    const failure = outcome.kind === 'done' ? undefined : outcome.error;
    const { message, settled } = inbound(topic, partition, m, headers, event, failure);
    await core.settle(message, outcome);
    return settled();
  }

  /**
   * Runs a batch: one key's messages in order, different keys concurrently (bounded). Nothing new
   * starts once a message is held (snoozed or parked) or could not be handed back: the partition is
   * fetched again from there. Returns which messages are done and how long the partition is held.
   */
  async function runBatch(
    payload: EachBatchPayload,
    messages: readonly KafkaMessage[],
  ): Promise<{ finished: boolean[]; holdMs?: number | undefined; error?: unknown }> {
    const { topic, partition } = payload.batch;
    const finished = messages.map(() => false);
    const limit = createLimiter(config.maxInFlightPerPartition);
    let error: unknown;
    let holdMs: number | undefined;
    const canStart = () =>
      error === undefined && holdMs === undefined && !stopping && payload.isRunning() && !payload.isStale();
    const chains = new Map<string, Promise<void>>();
    messages.forEach((m, i) => {
      const key = m.key ? m.key.toString('base64') : `\u0000${i}`;
      const chain = (chains.get(key) ?? Promise.resolve()).then(async () => {
        // Checked once a slot is free: nothing new starts after close() began or a message was held.
        await limit(async () => {
          if (!canStart()) return;
          const settled = await processMessage(topic, partition, m);
          if (settled.done) finished[i] = true;
          else holdMs = Math.max(holdMs ?? 0, settled.holdMs);
        });
      });
      chains.set(
        key,
        chain.catch((err: unknown) => {
          error ??= err;
        }),
      );
    });
    // Heartbeats keep the membership while slow handlers run (kafkajs only beats between batches).
    const beat = setInterval(
      () => payload.heartbeat().catch(() => undefined),
      Math.max(500, config.sessionTimeout / 4),
    );
    try {
      await Promise.race([Promise.all(chains.values()), abortedSignal]);
    } finally {
      clearInterval(beat);
    }
    return { finished, holdMs, error };
  }

  /**
   * Pauses the partition for `ms`; kafkajs then fetches it again from its resolved offset — the first
   * message not done (a fetch starts at `offsetManager.nextOffset`, the last resolved offset + 1).
   */
  function pauseFor(payload: EachBatchPayload, ms: number): void {
    const resume = payload.pause();
    const timer = setTimeout(() => {
      resumeTimers.delete(timer);
      resume();
    }, ms);
    timer.unref(); // a long snooze never keeps a closing process alive (close() clears it, too)
    resumeTimers.add(timer);
  }

  async function eachBatch(payload: EachBatchPayload): Promise<void> {
    const { topic, partition } = payload.batch;
    let messages = payload.batch.messages;
    // A retry copy waits for its not-before time with its partition paused, not by blocking the
    // fetch loop: the partition is fetched again from the first copy that was not due.
    let dueAt: number | undefined;
    if (topic === topics.retry) {
      const now = Date.now();
      // Another group's copy is never waited for: it is skipped, due or not.
      const idx = messages.findIndex(
        (m) => notBeforeOf(m.headers) > now && isForGroup(readHeaders(m.headers), config.groupId),
      );
      if (idx >= 0) {
        dueAt = notBeforeOf(messages[idx]?.headers);
        messages = messages.slice(0, idx);
      }
    }
    const { finished, holdMs, error } = await runBatch(payload, messages);
    if (aborted) return;
    const firstNotDone = finished.indexOf(false);
    const done = firstNotDone === -1 ? messages.length : firstNotDone;
    // Done behind the first message not done: remembered, so the refetch from there skips them.
    for (let i = done + 1; i < messages.length; i++) {
      const m = messages[i];
      if (m && finished[i]) progress.done(topic, partition, m.offset);
    }
    const last = messages[done - 1];
    if (last) {
      payload.resolveOffset(last.offset);
      const next = nextOffset(last.offset);
      await payload.commitOffsetsIfNecessary({
        topics: [{ topic, partitions: [{ partition, offset: next }] }],
      });
      progress.committed(topic, partition, next);
    }
    if (error !== undefined) {
      log.error(
        { topic, partition, err: error },
        'could not hand back a failed event; the partition retries shortly',
      );
      pauseFor(payload, INFRA_RETRY_MS);
    } else if (holdMs !== undefined) {
      // A snoozed or parked message holds its partition: nothing behind it is committed before it.
      pauseFor(payload, holdMs);
    } else if (dueAt !== undefined && done === messages.length && !stopping) {
      pauseFor(payload, Math.max(0, dueAt - Date.now()));
    }
  }

  await consumer.connect();
  try {
    let isJoined = false;
    let failJoin!: (err: Error) => void;
    const joined = new Promise<void>((resolve, reject) => {
      failJoin = reject;
      const timer = setTimeout(
        () => reject(new Error(`kafka consumer did not join group ${config.groupId} in time`)),
        config.joinTimeoutMs,
      );
      const offJoin = consumer.on(consumer.events.GROUP_JOIN, () => {
        clearTimeout(timer);
        offJoin();
        isJoined = true;
        resolve();
      });
    });
    consumer.on(consumer.events.FETCH, () => (crashingSince = undefined));
    // What is remembered of partitions this member no longer owns is dropped (see `progress.ts`).
    consumer.on(consumer.events.GROUP_JOIN, ({ payload }) => progress.retain(payload.memberAssignment));
    consumer.on(consumer.events.CRASH, ({ payload: { error, restart } }) => {
      log.error({ err: error, restart }, 'kafka consumer crashed');
      if (restart || stopping) return;
      const why = new Error(
        crashingSince !== undefined && Date.now() - crashingSince >= config.recoveryBudgetMs
          ? `kafka consumer of group ${config.groupId} kept crashing for ${config.recoveryBudgetMs} ms: ${error.message}`
          : `kafka consumer of group ${config.groupId} crashed and kafkajs will not restart it: ${error.message}`,
        { cause: error },
      );
      if (isJoined) onFatal(`kafka consumer ${config.groupId}`, why);
      else failJoin(why);
    });
    await consumer.subscribe({ topics: [topics.events, topics.retry], fromBeginning: true });
    await consumer.run({
      autoCommit: false,
      eachBatchAutoResolve: false,
      partitionsConsumedConcurrently: config.partitionsConsumedConcurrently,
      eachBatch,
    });
    await joined;
  } catch (err) {
    await consumer.disconnect().catch(() => undefined);
    throw err;
  }
  log.info('kafka subscription joined its group');

  let closing: Promise<void> | undefined;
  return {
    close: () =>
      (closing ??= (async () => {
        stopping = true;
        for (const timer of resumeTimers) clearTimeout(timer);
        // In-flight handlers get the grace period; after it their offsets stay uncommitted.
        const deadline = setTimeout(() => {
          aborted = true;
          abort();
        }, config.shutdownGraceMs);
        try {
          await consumer.disconnect();
        } finally {
          clearTimeout(deadline);
          for (const timer of resumeTimers) clearTimeout(timer);
        }
      })()),
  };
}
