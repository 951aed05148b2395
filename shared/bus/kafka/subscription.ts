import type { EachBatchPayload, Kafka, KafkaMessage, Message } from 'kafkajs';
import type { DeadLetterSink } from '../../dead-letters/dead-letter.ts';
import type { EventEnvelope } from '../../domain/events.ts';
import { PoisonMessageError } from '../../errors/domain.ts';
import type { Logger } from '../../observability/logger.ts';
import { carrierFromHeaders } from '../../observability/tracing/trace-context.ts';
import { fatalOrLog, type OnFatal } from '../../runtime/lifecycle.ts';
import { backoffDelayMs, decodeEvent, EventHeaders } from '../codec.ts';
import type { EventHandler, Subscription } from '../event-bus.ts';
import {
  attemptOf,
  deadLetterId,
  isForGroup,
  KafkaHeaders,
  nextOffset,
  notBeforeOf,
  originHeaders,
  originOf,
  ownHeaders,
  readHeaders,
  type KafkaTopics,
  type Origin,
} from './headers.ts';

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
  logger: Logger;
  /** Told when the consumer stopped for good (see {@link startKafkaSubscription}). Absent: logged only. */
  onFatal?: OnFatal | undefined;
}

/** How long a partition rests after the bus could not park a failure (broker or database down). */
const INFRA_RETRY_MS = 1_000;

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
 * One consumer-group member reading the events topic and its retry topic. Offsets are committed by
 * hand, and only for a contiguous prefix of messages that are done: handled, parked on the retry
 * topic, or dead-lettered — each of those only after its broker/database write was acknowledged.
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

  async function deadLetter(
    m: KafkaMessage,
    headers: Record<string, string>,
    origin: Origin,
    error: Error,
    attempts: number,
    event?: EventEnvelope,
  ) {
    const own = ownHeaders(headers);
    const id = deadLetterId(origin, config.deadLetterScope);
    // The group travels with the dead letter: a redrive goes back to this group only.
    const group = { [KafkaHeaders.group]: config.groupId };
    await deps.send(topics.dlq, [
      {
        key: m.key,
        value: m.value,
        headers: {
          ...own,
          ...group,
          ...originHeaders(origin),
          [KafkaHeaders.error]: error.message.slice(0, 4_000),
          [KafkaHeaders.attempts]: String(attempts),
        },
      },
    ]);
    const firstFailed = Number(headers[KafkaHeaders.firstFailedAt]);
    await deps.deadLetters.record({
      id,
      transport: 'kafka',
      origin: origin.topic,
      kind: 'event',
      messageKey: m.key?.toString('utf8') ?? null,
      payload: m.value ?? Buffer.alloc(0),
      headers: { ...own, ...group },
      error: error.message,
      stack: error.stack ?? null,
      attempts,
      correlationId: own[EventHeaders.correlationId] ?? event?.correlationId ?? null,
      subjectId: event?.key ?? null,
      firstFailedAt: Number.isFinite(firstFailed) ? new Date(firstFailed) : new Date(),
    });
    log.warn(
      { deadLetterId: id, correlationId: own[EventHeaders.correlationId], attempts, err: error },
      'event dead-lettered',
    );
  }

  async function retryLater(
    m: KafkaMessage,
    headers: Record<string, string>,
    origin: Origin,
    error: Error,
    attempt: number,
  ) {
    const delayMs = backoffDelayMs(attempt, config.backoffMs, config.backoffMaxMs);
    await deps.send(topics.retry, [
      {
        key: m.key,
        value: m.value,
        headers: {
          ...headers,
          ...originHeaders(origin),
          // The retry topic is shared: the other groups skip this copy (they handled the event).
          [KafkaHeaders.group]: config.groupId,
          [KafkaHeaders.attempt]: String(attempt + 1),
          [KafkaHeaders.notBefore]: String(Date.now() + delayMs),
          [KafkaHeaders.firstFailedAt]: headers[KafkaHeaders.firstFailedAt] ?? String(Date.now()),
          [KafkaHeaders.error]: error.message.slice(0, 1_000),
        },
      },
    ]);
    log.debug(
      { correlationId: headers[EventHeaders.correlationId], attempt, delayMs, err: error },
      'event retry scheduled',
    );
  }

  /** Settles once the message is done; throws only when the failure could not be parked. */
  async function processMessage(topic: string, partition: number, m: KafkaMessage): Promise<void> {
    const headers = readHeaders(m.headers);
    if (!isForGroup(headers, config.groupId)) return; // another group's retry or redrive: done here
    const origin = originOf(headers, { topic, partition, offset: m.offset });
    const attempt = attemptOf(headers);
    let event: EventEnvelope;
    try {
      event = decodeEvent(m.value);
    } catch (err) {
      const error = err instanceof Error ? err : new PoisonMessageError(String(err));
      return deadLetter(m, headers, origin, error, attempt);
    }
    try {
      await deps.handler(event, { attempt, transport: 'kafka', trace: carrierFromHeaders(headers) });
    } catch (err) {
      const error = err instanceof Error ? err : new Error(String(err));
      // Past the shutdown deadline the offset stays uncommitted: the next member redelivers it.
      if (aborted) throw new AbortedError('subscription closed past its grace period');
      if (err instanceof PoisonMessageError || attempt >= config.maxAttempts) {
        await deadLetter(m, headers, origin, error, attempt, event);
      } else {
        await retryLater(m, headers, origin, error, attempt);
      }
    }
  }

  /**
   * Runs a batch: one key's messages in order, different keys concurrently (bounded). Returns how
   * many leading messages are done — the only ones whose offsets may be committed.
   */
  async function runBatch(
    payload: EachBatchPayload,
    messages: readonly KafkaMessage[],
  ): Promise<{ done: number; error?: unknown }> {
    const { topic, partition } = payload.batch;
    const finished = messages.map(() => false);
    const limit = createLimiter(config.maxInFlightPerPartition);
    let error: unknown;
    const canStart = () => error === undefined && !stopping && payload.isRunning() && !payload.isStale();
    const chains = new Map<string, Promise<void>>();
    messages.forEach((m, i) => {
      const key = m.key ? m.key.toString('base64') : `\u0000${i}`;
      const chain = (chains.get(key) ?? Promise.resolve()).then(async () => {
        // Checked once a slot is free: nothing new starts after close() began.
        finished[i] = await limit(async () => {
          if (!canStart()) return false;
          await processMessage(topic, partition, m);
          return true;
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
    const done = finished.indexOf(false);
    return { done: done === -1 ? messages.length : done, error };
  }

  function pauseFor(payload: EachBatchPayload, ms: number): void {
    const resume = payload.pause();
    const timer = setTimeout(() => {
      resumeTimers.delete(timer);
      resume();
    }, ms);
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
    const { done, error } = await runBatch(payload, messages);
    if (aborted) return;
    const last = messages[done - 1];
    if (last) {
      payload.resolveOffset(last.offset);
      await payload.commitOffsetsIfNecessary({
        topics: [{ topic, partitions: [{ partition, offset: nextOffset(last.offset) }] }],
      });
    }
    if (error !== undefined) {
      log.error(
        { topic, partition, err: error },
        'could not park a failed event; the partition retries shortly',
      );
      pauseFor(payload, INFRA_RETRY_MS);
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
        }
      })()),
  };
}
