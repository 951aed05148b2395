import {
  ChangeMessageVisibilityBatchCommand,
  ChangeMessageVisibilityCommand,
  DeleteMessageBatchCommand,
  ReceiveMessageCommand,
  SendMessageCommand,
  type Message,
  type SQSClient,
} from '@aws-sdk/client-sqs';
import type { DeadLetterSink } from '../../dead-letters/dead-letter.ts';
import { PoisonMessageError } from '../../errors/domain.ts';
import type { Logger } from '../../observability/logger.ts';
import { pause } from '../../runtime/deadline.ts';
import { asError, fatalOrLog, superviseLoop, type OnFatal } from '../../runtime/lifecycle.ts';
import { backoffDelayMs, decodeEvent, EventHeaders } from '../codec.ts';
import { carrierFromHeaders } from '../../observability/tracing/trace-context.ts';
import type { EventHandler } from '../event-bus.ts';
import { isPermanentSqsError, isQueueMissing } from './client.ts';
import {
  deadLetterAttributes,
  deadLetterRecord,
  headersOf,
  isPack,
  priorAttemptsOf,
  receiveCountOf,
  SqsHeaders,
  toAttributes,
  unpack,
} from './messages.ts';
import { chunkEntries, sendChunk } from './publisher.ts';
import type { GroupQueues } from './topology.ts';

export interface SqsConsumerOptions {
  client: SQSClient;
  /** Declares the group's queues (again, after one was deleted) and answers their URLs. */
  declare: () => Promise<GroupQueues>;
  fifo: boolean;
  handler: EventHandler;
  deadLetters: DeadLetterSink;
  log: Logger;
  /** Messages held at once (received, not yet deleted or handed back): the prefetch bound. */
  prefetch: number;
  waitTimeSeconds: number;
  visibilityTimeoutSeconds: number;
  maxAttempts: number;
  backoffMs: number;
  maxBackoffMs: number;
  shutdownGraceMs: number;
  /** Backoff between failed receives, and between tries to dead-letter while the DLQ or sink fails. */
  retryMinMs: number;
  retryMaxMs: number;
  /** How long receiving may keep failing (SQS unreachable) before the consumer gives up. */
  recoveryBudgetMs: number;
  onFatal?: OnFatal | undefined;
}

export interface SqsConsumer {
  /** Declares the group's queues and starts the pollers; rejects when SQS is unreachable or refuses. */
  start(): Promise<void>;
  /** Idempotent: stops receiving, waits for in-flight handlers up to the grace period, hands back the rest. */
  close(): Promise<void>;
}

/** A received message this consumer is responsible for until it deletes it or hands it back. */
interface Held {
  message: Message;
  receiptHandle: string;
  /** When SQS would make it visible again unless extended (ms since epoch). */
  visibleUntil: number;
  state: 'held' | 'settled';
}

/** Counting semaphore of prefetch slots; a waiting `take` returns 0 once `signal` aborts. */
function createSlots(size: number, signal: AbortSignal) {
  let free = size;
  const waiting: (() => void)[] = [];
  signal.addEventListener('abort', () => waiting.splice(0).forEach((wake) => wake()), { once: true });
  return {
    /** Up to `max` slots, at least one (waits for it). */
    async take(max: number): Promise<number> {
      while (free === 0 && !signal.aborted) await new Promise<void>((r) => waiting.push(r));
      if (signal.aborted) return 0;
      const n = Math.min(max, free);
      free -= n;
      return n;
    },
    give(n: number): void {
      free += n;
      for (let i = 0; i < n && waiting.length > 0; i++) waiting.shift()?.();
    },
  };
}

/**
 * One consumer of a group's SQS queue. `ceil(prefetch / 10)` pollers long-poll the queue, each taking
 * as many messages as free prefetch slots allow, so at most `prefetch` messages are held. A message is
 * deleted only after its handler resolved (the projection committed); while the handler — or the
 * batch it joined — still works, a heartbeat extends its visibility, so a slow batch is never
 * redelivered behind its back. Failures:
 * - poison (not JSON, not a valid event) → the DLQ and the dead-letter sink at once;
 * - a pack (several events in one message, standard queues) → every event to the handler at once; the
 *   ones that fail are split out into messages of their own (see handlePack), then the pack is deleted;
 * - a failing handler → retried with exponential backoff: on a standard queue by ChangeMessageVisibility
 *   (the message comes back after the delay, in whole seconds, and its slot is free meanwhile); on a FIFO
 *   queue in place, holding the message and the ones behind it in its group, because handing it back
 *   would let SQS count every later message of the group as received again;
 * - attempts exhausted (`maxAttempts`, counted by SQS's receive count plus in-place retries) → the DLQ
 *   and the sink; a message received more than `maxAttempts` times (its last attempt never finished:
 *   the consumer crashed) is dead-lettered without running the handler again.
 * Receiving that keeps failing is retried with backoff for `recoveryBudgetMs`; past it — or at once
 * when SQS refuses our credentials or permissions — `onFatal` hears why.
 */
export function createSqsConsumer(o: SqsConsumerOptions): SqsConsumer {
  let queues: GroupQueues | undefined;
  let log = o.log;
  const stop = new AbortController();
  /** Cuts the long polls still waiting when close() cannot wait for them any longer. */
  const cutPolls = new AbortController();
  const slots = createSlots(o.prefetch, stop.signal);
  const held = new Map<string, Held>();
  const inFlight = new Set<Promise<void>>();
  /** FIFO: the tail of each message group's chain in this consumer. */
  const chains = new Map<string, Promise<void>>();
  const visibilityMs = o.visibilityTimeoutSeconds * 1_000;
  // A long poll never outlasts half the shutdown grace: close() waits for the polls in flight (see
  // there), and the other half is for the handlers.
  const waitTimeSeconds = Math.min(o.waitTimeSeconds, Math.max(1, Math.floor(o.shutdownGraceMs / 2_000)));
  let receiveFailingSince: number | undefined;
  let receiveFailures = 0;
  let extending = false;
  let pollers: Promise<void>[] = [];
  let supervisor: Promise<void> | undefined;
  let heartbeat: NodeJS.Timeout | undefined;
  let closing: Promise<void> | undefined;
  let pendingDeletes: { h: Held; done: (ok: boolean) => void }[] = [];
  let deleteScheduled = false;

  const q = (): GroupQueues => {
    if (!queues) throw new Error('the SQS consumer is not started');
    return queues;
  };

  function track(work: Promise<void>): void {
    const tracked = work
      .catch((err: unknown) => log.error({ err }, 'sqs message processing failed unexpectedly'))
      .finally(() => inFlight.delete(tracked));
    inFlight.add(tracked);
  }

  /** Frees the message's slot; after this nothing may delete or hand it back. */
  function settle(h: Held): void {
    if (h.state === 'settled') return;
    h.state = 'settled';
    held.delete(h.receiptHandle);
    slots.give(1);
  }

  async function changeVisibility(h: Held, seconds: number): Promise<void> {
    try {
      await o.client.send(
        new ChangeMessageVisibilityCommand({
          QueueUrl: q().queueUrl,
          ReceiptHandle: h.receiptHandle,
          VisibilityTimeout: seconds,
        }),
      );
    } catch (err) {
      // The receipt is stale (the visibility lapsed): SQS hands the message out again anyway.
      log.warn({ err, messageId: h.message.MessageId }, 'sqs visibility change failed');
    }
  }

  /**
   * Deletes a message whose work is done. Its slot is free at once: the delete is one
   * DeleteMessageBatch away, and should it fail the message merely comes back (the inbox absorbs it).
   */
  function finish(h: Held): void {
    if (h.state !== 'held') return; // handed back at close: another consumer's now
    settle(h);
    track(deleteMessage(h).then(() => undefined));
  }

  /** Hands a message back at once (visibility 0): another consumer may take it now. */
  async function handBack(h: Held): Promise<void> {
    if (h.state !== 'held') return;
    settle(h);
    await changeVisibility(h, 0);
  }

  /** Deletes in DeleteMessageBatch calls of up to 10, gathering the deletes of one event-loop turn. */
  function deleteMessage(h: Held): Promise<boolean> {
    return new Promise((done) => {
      pendingDeletes.push({ h, done });
      if (!deleteScheduled) {
        deleteScheduled = true;
        setImmediate(() => void flushDeletes());
      }
    });
  }

  async function flushDeletes(): Promise<void> {
    deleteScheduled = false;
    const batch = pendingDeletes;
    pendingDeletes = [];
    const chunks: (typeof batch)[] = [];
    for (let i = 0; i < batch.length; i += 10) chunks.push(batch.slice(i, i + 10));
    await Promise.all(
      chunks.map(async (chunk) => {
        try {
          const out = await o.client.send(
            new DeleteMessageBatchCommand({
              QueueUrl: q().queueUrl,
              Entries: chunk.map((d, i) => ({ Id: String(i), ReceiptHandle: d.h.receiptHandle })),
            }),
          );
          const failed = new Set((out.Failed ?? []).map((f) => f.Id));
          if (failed.size > 0)
            log.warn({ failed: out.Failed }, 'sqs delete failed; those messages come back');
          chunk.forEach((d, i) => d.done(!failed.has(String(i))));
        } catch (err) {
          // Not deleted: each comes back after its visibility timeout, and the projection's inbox
          // absorbs the second delivery.
          log.warn({ err, messages: chunk.length }, 'sqs delete failed; those messages come back');
          chunk.forEach((d) => d.done(false));
        }
      }),
    );
  }

  /** Extends the visibility of every held message that used a third of its timeout (one beat at a time). */
  async function extendVisibility(): Promise<void> {
    if (extending) return;
    extending = true;
    try {
      await extendDue();
    } finally {
      extending = false;
    }
  }

  async function extendDue(): Promise<void> {
    const due = [...held.values()].filter((h) => h.visibleUntil - Date.now() < (visibilityMs * 2) / 3);
    for (let i = 0; i < due.length; i += 10) {
      const chunk = due.slice(i, i + 10);
      const until = Date.now() + visibilityMs;
      try {
        const out = await o.client.send(
          new ChangeMessageVisibilityBatchCommand({
            QueueUrl: q().queueUrl,
            Entries: chunk.map((h, n) => ({
              Id: String(n),
              ReceiptHandle: h.receiptHandle,
              VisibilityTimeout: o.visibilityTimeoutSeconds,
            })),
          }),
        );
        const failed = new Set((out.Failed ?? []).map((f) => f.Id));
        chunk.forEach((h, n) => {
          if (!failed.has(String(n))) h.visibleUntil = until;
        });
        if (failed.size > 0)
          log.warn({ failed: out.Failed }, 'sqs visibility extension failed for some messages');
      } catch (err) {
        log.warn({ err, messages: chunk.length }, 'sqs visibility extension failed; retried next beat');
      }
    }
  }

  /**
   * Runs `step` until it succeeds, backing off while it fails (the DLQ, the sink or SQS is down) and
   * keeping `h` meanwhile (the heartbeat extends it): handing it back would spend receives until SQS's
   * redrive policy moved it without our record. False when the consumer closed first (close() hands
   * `h` back: the next consumer tries again) or `h` was handed back.
   */
  async function durably(h: Held, what: string, cause: Error, step: () => Promise<void>): Promise<boolean> {
    for (let round = 1; ; round++) {
      try {
        await step();
        return true;
      } catch (failure) {
        log.error({ err: failure, cause, round }, `${what} failed; holding the message and trying again`);
        if (stop.signal.aborted || h.state !== 'held') return false;
        await pause(backoffDelayMs(round, o.retryMinMs, o.retryMaxMs), stop.signal);
      }
    }
  }

  /**
   * Copies `message` (a received one, or an event of a pack) to the DLQ — original body and
   * attributes, plus error, attempts and origin — and records it in the sink, durably (see durably()).
   */
  async function deadLetter(
    h: Held,
    message: Message,
    error: Error,
    attempts: number,
    orderId: string | null,
  ): Promise<boolean> {
    const { queue, dlqUrl } = q();
    const record = deadLetterRecord(queue, message, error, attempts, orderId);
    let copied = false;
    const done = await durably(h, 'dead-lettering an event', error, async () => {
      if (!copied) {
        await o.client.send(
          new SendMessageCommand({
            QueueUrl: dlqUrl,
            MessageBody: message.Body ?? '',
            MessageAttributes: deadLetterAttributes(headersOf(message), error, attempts, queue),
            ...(o.fifo
              ? {
                  MessageGroupId: message.Attributes?.MessageGroupId ?? orderId ?? record.id,
                  MessageDeduplicationId: message.MessageId ?? record.id,
                }
              : {}),
          }),
        );
        copied = true;
      }
      await o.deadLetters.record(record);
    });
    if (done) {
      log.warn(
        { deadLetterId: record.id, correlationId: record.correlationId, attempts, err: error },
        'event dead-lettered',
      );
    }
    return done;
  }

  const backoffSeconds = (attempt: number) =>
    // SQS delays are in whole seconds: a sub-second backoff becomes one second.
    Math.max(1, Math.ceil(backoffDelayMs(attempt, o.backoffMs, o.maxBackoffMs) / 1_000));

  async function retryLater(h: Held, attempt: number, error: Error): Promise<void> {
    if (h.state !== 'held') return; // handed back at close: another consumer's now
    const seconds = Math.min(43_200, backoffSeconds(attempt));
    settle(h);
    await changeVisibility(h, seconds);
    log.info(
      {
        correlationId: headersOf(h.message)[EventHeaders.correlationId],
        attempt,
        delayMs: seconds * 1_000,
        err: error,
      },
      'event scheduled for retry',
    );
  }

  /** A message whose attempts were all used without one finishing: the consumer died on it. */
  const crashed = (received: number) =>
    new PoisonMessageError(
      `received ${received} times, its last attempt never finished (the consumer crashed or was stopped)`,
    );

  /** One event in one message (a lone event, an event split out of a pack, anything foreign). */
  async function handleSingle(h: Held): Promise<void> {
    const received = receiveCountOf(h.message);
    // An event split out of a pack brings the attempts it had there.
    const prior = priorAttemptsOf(h.message);
    let attempt = prior + received;
    let orderId: string | null = headersOf(h.message)[SqsHeaders.key] ?? null;
    try {
      if (attempt > o.maxAttempts) throw crashed(received);
      const event = decodeEvent(h.message.Body);
      orderId = event.key;
      for (;;) {
        try {
          await o.handler(event, {
            attempt,
            transport: 'sqs',
            trace: carrierFromHeaders(headersOf(h.message)),
          });
          break;
        } catch (err) {
          const error = asError(err);
          if (error instanceof PoisonMessageError || attempt >= o.maxAttempts) throw error;
          if (!o.fifo) return await retryLater(h, attempt, error);
          // FIFO: retry in place, the rest of the group waiting behind (see createSqsConsumer).
          log.info({ correlationId: event.correlationId, attempt, err: error }, 'event retried in place');
          await pause(backoffDelayMs(attempt, o.backoffMs, o.maxBackoffMs), stop.signal);
          if (stop.signal.aborted) return; // close() hands it back
          attempt++;
        }
      }
      // Deleted only now, after the handler resolved (the projection committed).
      finish(h);
    } catch (err) {
      if (h.state !== 'held') return; // handed back at close: another consumer's now
      if (await deadLetter(h, h.message, asError(err), Math.min(attempt, o.maxAttempts), orderId)) finish(h);
    }
  }

  type Outcome =
    | { kind: 'done' }
    | { kind: 'retry'; message: Message; error: Error }
    | { kind: 'dead'; message: Message; error: Error; attempts: number; orderId: string | null };

  /**
   * A pack: every event goes to the handler at once (the projector coalesces them), each with the
   * pack's receive count as its attempt. The pack is deleted once every event is done or durably
   * somewhere else: an event that failed and has attempts left is split out into a message of its
   * own (`x-prior-attempts`, sent with the backoff as DelaySeconds) and from there retries like a lone
   * event; one that is poison or out of attempts is dead-lettered alone. The others are not redelivered.
   */
  async function handlePack(h: Held): Promise<void> {
    const received = receiveCountOf(h.message);
    let events: Message[];
    try {
      events = unpack(h.message);
    } catch (err) {
      if (await deadLetter(h, h.message, asError(err), received, null)) finish(h);
      return;
    }
    const outcomes = await Promise.all(
      events.map(async (message): Promise<Outcome> => {
        let orderId: string | null = headersOf(message)[SqsHeaders.key] ?? null;
        try {
          if (received > o.maxAttempts) throw crashed(received);
          const event = decodeEvent(message.Body);
          orderId = event.key;
          await o.handler(event, {
            attempt: received,
            transport: 'sqs',
            trace: carrierFromHeaders(headersOf(message)),
          });
          return { kind: 'done' };
        } catch (err) {
          const error = asError(err);
          if (error instanceof PoisonMessageError || received >= o.maxAttempts) {
            return { kind: 'dead', message, error, attempts: Math.min(received, o.maxAttempts), orderId };
          }
          return { kind: 'retry', message, error };
        }
      }),
    );
    if (h.state !== 'held') return; // handed back at close: another consumer's now
    const retries = outcomes.filter((x) => x.kind === 'retry');
    if (retries.length > 0) {
      const { queueUrl } = q();
      const entries = retries.map((r, i) => ({
        Id: `r${i}`,
        MessageBody: r.message.Body ?? '',
        MessageAttributes: toAttributes({
          ...headersOf(r.message),
          [SqsHeaders.priorAttempts]: String(received),
        }),
        DelaySeconds: Math.min(900, backoffSeconds(received)),
      }));
      const split = await durably(h, 'splitting failed events out of a pack', retries[0]!.error, async () => {
        for (const chunk of chunkEntries(queueUrl, entries)) await sendChunk(o.client, queueUrl, chunk);
      });
      if (!split) return;
      log.info(
        { events: retries.length, attempt: received, err: retries[0]!.error },
        'failed events split out of their pack for retry',
      );
    }
    for (const d of outcomes) {
      if (d.kind === 'dead' && !(await deadLetter(h, d.message, d.error, d.attempts, d.orderId))) return;
    }
    finish(h);
  }

  async function handle(h: Held): Promise<void> {
    // Never started: close() hands it back once no poll is left that could receive it again.
    if (h.state !== 'held' || stop.signal.aborted) return;
    // Packs only ever reach standard queues (the publisher sends FIFO events one by one).
    if (!o.fifo && isPack(h.message)) return handlePack(h);
    return handleSingle(h);
  }

  function dispatch(h: Held): void {
    if (!o.fifo) return track(handle(h));
    const group = h.message.Attributes?.MessageGroupId ?? '';
    const previous = chains.get(group) ?? Promise.resolve();
    const next = previous.catch(() => undefined).then(() => handle(h));
    chains.set(group, next);
    track(next.finally(() => chains.get(group) === next && chains.delete(group)));
  }

  async function poll(): Promise<void> {
    while (!stop.signal.aborted) {
      const n = await slots.take(10);
      if (n === 0) return;
      let messages: Message[];
      try {
        const out = await o.client.send(
          new ReceiveMessageCommand({
            QueueUrl: q().queueUrl,
            MaxNumberOfMessages: n,
            WaitTimeSeconds: waitTimeSeconds,
            VisibilityTimeout: o.visibilityTimeoutSeconds,
            MessageAttributeNames: ['All'],
            MessageSystemAttributeNames: [
              'ApproximateReceiveCount',
              'ApproximateFirstReceiveTimestamp',
              'MessageGroupId',
            ],
          }),
          { abortSignal: cutPolls.signal },
        );
        messages = out.Messages ?? [];
        receiveFailingSince = undefined;
        receiveFailures = 0;
      } catch (err) {
        slots.give(n);
        if (stop.signal.aborted) return;
        await recover(err);
        continue;
      }
      const receivable = messages.filter((m) => m.ReceiptHandle);
      slots.give(n - receivable.length);
      const receivedAt = Date.now();
      for (const message of receivable) {
        if (!message.ReceiptHandle) continue;
        const h: Held = {
          message,
          receiptHandle: message.ReceiptHandle,
          visibleUntil: receivedAt + visibilityMs,
          state: 'held',
        };
        held.set(h.receiptHandle, h);
        dispatch(h);
      }
    }
  }

  /** After a failed receive: re-declare a deleted queue, give up on a permanent refusal or past the budget, else back off. */
  async function recover(err: unknown): Promise<void> {
    const message = err instanceof Error ? err.message : String(err);
    if (isPermanentSqsError(err))
      throw new Error(`SQS refuses what receiving needs: ${message}`, { cause: err });
    receiveFailingSince ??= Date.now();
    const failingMs = Date.now() - receiveFailingSince;
    if (failingMs >= o.recoveryBudgetMs)
      throw new Error(`could not receive from SQS for ${o.recoveryBudgetMs} ms: ${message}`, { cause: err });
    log.warn({ err, failingMs }, 'sqs receive failed; retrying');
    await pause(backoffDelayMs(++receiveFailures, o.retryMinMs, o.retryMaxMs), stop.signal);
    if (isQueueMissing(err) && !stop.signal.aborted) {
      try {
        queues = await o.declare();
        log.warn('sqs queue was missing; declared it again');
      } catch (declareErr) {
        if (isPermanentSqsError(declareErr))
          throw new Error(`SQS refuses to declare the queue again: ${String(declareErr)}`, {
            cause: declareErr,
          });
        log.warn({ err: declareErr }, 'declaring the sqs queue again failed');
      }
    }
  }

  async function waitForInFlight(deadline: number): Promise<void> {
    while (inFlight.size > 0 && Date.now() < deadline) {
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([
        Promise.allSettled([...inFlight]),
        new Promise((r) => (timer = setTimeout(r, Math.max(0, deadline - Date.now())))),
      ]);
      clearTimeout(timer);
    }
  }

  return {
    async start() {
      queues = await o.declare();
      log = o.log.child({ queue: queues.queue, group: queues.group });
      heartbeat = setInterval(() => void extendVisibility(), Math.max(1_000, Math.floor(visibilityMs / 3)));
      heartbeat.unref();
      pollers = Array.from({ length: Math.max(1, Math.ceil(o.prefetch / 10)) }, () => poll());
      supervisor = superviseLoop(
        `sqs consumer ${queues.queue}`,
        // The first poller that gives up stops the others: the consumer is done for.
        Promise.all(pollers).catch((err: unknown) => {
          stop.abort();
          throw err;
        }),
        fatalOrLog(o.onFatal, log),
        () => closing !== undefined,
      );
    },
    close() {
      closing ??= (async () => {
        const deadline = Date.now() + o.shutdownGraceMs;
        stop.abort();
        // Polls in flight end within their wait time, at most half the grace (what they still bring
        // is held, not handled). Only then is anything handed back: a poll still waiting — even one
        // we abandoned, SQS does not know — would take it again at once, and every receive counts as
        // an attempt. Cutting them is the last resort (an endpoint that does not answer): SQS may then
        // hand a message to a request nobody reads, and it comes back after its visibility timeout.
        const polls = Promise.allSettled(pollers);
        let timer: NodeJS.Timeout | undefined;
        const cutAfterMs = Math.max(waitTimeSeconds * 1_000 + 2_000, o.shutdownGraceMs / 2);
        await Promise.race([polls, new Promise((r) => (timer = setTimeout(r, cutAfterMs)))]);
        clearTimeout(timer);
        cutPolls.abort();
        await polls;
        await waitForInFlight(deadline);
        const left = [...held.values()];
        if (left.length > 0) {
          log.info({ messages: left.length }, 'sqs consumer closing: unfinished messages handed back');
          await Promise.allSettled(left.map((h) => handBack(h)));
        }
        clearInterval(heartbeat);
        if (pendingDeletes.length > 0) await flushDeletes();
        await supervisor;
      })();
      return closing;
    },
  };
}
