import {
  ChangeMessageVisibilityBatchCommand,
  ChangeMessageVisibilityCommand,
  DeleteMessageBatchCommand,
  ReceiveMessageCommand,
  SendMessageBatchCommand,
  SendMessageCommand,
  type Message,
  type SendMessageBatchRequestEntry,
  type SQSClient,
} from '@aws-sdk/client-sqs';
import type { NewDeadLetter } from '../../dead-letters/dead-letter.ts';
import type { DeliveryCore, Inbound } from '../../delivery/core.ts';
import { PoisonMessageError, type Outcome } from '../../delivery/outcome.ts';
import type { DeliveryState, Verdict } from '../../delivery/policy.ts';
import type { Logger } from '../../observability/logger.ts';
import { carrierFromHeaders } from '../../observability/tracing/trace-context.ts';
import { pause } from '../../runtime/deadline.ts';
import { asError, fatalOrLog, superviseLoop, type OnFatal } from '../../runtime/lifecycle.ts';
import { backoffDelayMs, decodeEvent, EventHeaders } from '../codec.ts';
import type { EventHandler } from '../event-bus.ts';
import { isPermanentSqsError, isQueueMissing, isRefusedMessage } from './client.ts';
import {
  copyAttributes,
  deadLetterAttributes,
  deadLetterRecord,
  entrySize,
  headersOf,
  isPack,
  receivedState,
  receiveCountOf,
  SqsHeaders,
  unpack,
} from './messages.ts';
import { chunkEntries, MAX_BATCH_BYTES, SqsPublishRejectedError } from './publisher.ts';
import type { GroupQueues } from './topology.ts';

/** SQS delays a sent message at most 15 minutes (DelaySeconds)… */
const MAX_DELAY_SECONDS = 900;
/** …and hides a received one at most 12 hours (VisibilityTimeout). */
const MAX_VISIBILITY_SECONDS = 43_200;

export interface SqsConsumerOptions {
  client: SQSClient;
  /** Declares the group's queues (again, after one was deleted) and answers their URLs. */
  declare: () => Promise<GroupQueues>;
  fifo: boolean;
  handler: EventHandler;
  /** Decides what becomes of every failure (its origin: this group's queue); records the dead letters. */
  core: DeliveryCore;
  /** Bound to the group's queue and name. */
  log: Logger;
  /** Messages held at once (received, not yet deleted or handed back): the prefetch bound. */
  prefetch: number;
  waitTimeSeconds: number;
  visibilityTimeoutSeconds: number;
  shutdownGraceMs: number;
  /** Backoff between failed receives, and between tries of a hand-back or DLQ copy while SQS fails. */
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

/** How a delete ended: done, refused by SQS (a stale receipt), or the call failed. */
type DeleteResult = 'deleted' | 'refused' | 'failed';

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
 * Thrown by a transport action the consumer could not carry out because it is closing (or `close()`
 * already handed the message back): the message is left where it is, and `close()` hands it back.
 */
class Abandoned extends Error {
  override readonly name = 'Abandoned';
}

/** What a received message is to the delivery core: its state, its dead letter, how to log it. */
type InboundParts = Pick<Inbound, 'state' | 'deadLetter' | 'log'>;

/**
 * One consumer of a group's SQS queue — a transport adapter of the delivery core (shared/delivery):
 * the core decides what becomes of every failure (attempts, backoff, the last attempt, the dead
 * letter and what happens when recording it fails); this file only receives, holds, deletes and
 * hands back. `ceil(prefetch / 10)` pollers long-poll the queue, each taking as many messages as free
 * prefetch slots allow, so at most `prefetch` messages are held. A message is deleted only after its
 * handler resolved (the projection committed); while the handler — or the batch it joined — still
 * works, a heartbeat extends its visibility, so a slow batch is never redelivered behind its back.
 *
 * The primitives, for a lone message on a standard queue:
 * - ack: delete it;
 * - hand back as a retry: ChangeMessageVisibility(delay) — the next receive raises SQS's receive
 *   count, and with it the attempt;
 * - hand back as a snooze or park (no attempt consumed): a receive always raises the receive count,
 *   and the redrive policy would at last move the message to the DLQ by itself, without a row; so a
 *   copy carrying its state (`x-prior-attempts` such that its first receive is the same attempt,
 *   `x-snoozes`) is sent with the delay (DelaySeconds, ≤ 15 minutes; longer: `x-not-before`), and the
 *   original deleted once the copy is safe;
 * - copy to dead letters: sent to the DLQ (after the core recorded the row).
 * On a FIFO queue a hand-back holds the message in place — pause, keep the message group blocked
 * behind it, the heartbeat extending its visibility — counting the attempt (retry) or not (snooze) in
 * memory: handing it back would let later messages of its group overtake it.
 * A pack (several events in one message, standard queues) hands every event to the handler at once,
 * each settled by the core on its own: an event's hand-back splits it out into a message of its own
 * (with its state), its ack is nothing; the pack is deleted once every event is settled.
 * Attempt = the copy's `x-prior-attempts` + SQS's receive count (+ in-place retries on FIFO). A
 * message received beyond its last attempt (the last never finished: the consumer crashed on it) is
 * dead-lettered through the core without running the handler again: it never reaches the redrive
 * policy's limit, which sqs-bus.ts sets above.
 * While a hand-back or a DLQ copy fails (SQS down) the message is held (heartbeat) and the step tried
 * again with backoff; receiving that keeps failing is retried with backoff for `recoveryBudgetMs`; past
 * it — or at once when SQS refuses our credentials or permissions — `onFatal` hears why.
 */
export function createSqsConsumer(o: SqsConsumerOptions): SqsConsumer {
  let queues: GroupQueues | undefined;
  const log = o.log;
  const { core } = o;
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
  let pendingDeletes: { h: Held; done: (result: DeleteResult) => void }[] = [];
  let deleteScheduled = false;
  let pendingCopies: { entry: SendMessageBatchRequestEntry; done: (err?: Error) => void }[] = [];
  let copyScheduled = false;

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

  /** Frees the message's slot and stops holding it; after this nothing may delete or hand it back. */
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
      // The receipt is stale (the visibility lapsed), or SQS is down: the message comes back after its
      // visibility timeout anyway — the next receive, as a hand-back by visibility means.
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
  async function handBackNow(h: Held): Promise<void> {
    if (h.state !== 'held') return;
    settle(h);
    await changeVisibility(h, 0);
  }

  /** Deletes in DeleteMessageBatch calls of up to 10, gathering the deletes of one event-loop turn. */
  function deleteMessage(h: Held): Promise<DeleteResult> {
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
          chunk.forEach((d, i) => d.done(failed.has(String(i)) ? 'refused' : 'deleted'));
        } catch (err) {
          // Not deleted: each comes back after its visibility timeout, and the projection's inbox
          // absorbs the second delivery.
          log.warn({ err, messages: chunk.length }, 'sqs delete failed; those messages come back');
          chunk.forEach((d) => d.done('failed'));
        }
      }),
    );
  }

  /**
   * Sends a copy to the group's queue (a split-out, a snoozed or parked message), gathering the
   * copies of one event-loop turn into SendMessageBatch calls. Resolves once SQS confirmed this one;
   * rejects with {@link SqsPublishRejectedError} when SQS refuses it for good.
   */
  function sendCopy(entry: Omit<SendMessageBatchRequestEntry, 'Id'>): Promise<void> {
    return new Promise((resolve, reject) => {
      pendingCopies.push({ entry: { ...entry, Id: '' }, done: (err) => (err ? reject(err) : resolve()) });
      if (!copyScheduled) {
        copyScheduled = true;
        setImmediate(() => void flushCopies());
      }
    });
  }

  async function flushCopies(): Promise<void> {
    copyScheduled = false;
    const batch = pendingCopies.splice(0);
    pendingCopies = [];
    const queueUrl = q().queueUrl;
    const sendable = batch.filter((c, i) => {
      c.entry.Id = `c${i}`;
      if (entrySize(c.entry) <= MAX_BATCH_BYTES) return true;
      c.done(
        new SqsPublishRejectedError(queueUrl, [
          { Id: c.entry.Id, SenderFault: true, Code: 'MessageTooLong' },
        ]),
      );
      return false;
    });
    const byId = new Map(sendable.map((c) => [c.entry.Id, c]));
    await Promise.all(
      chunkEntries(
        queueUrl,
        sendable.map((c) => c.entry),
      ).map(async (chunk) => {
        try {
          const out = await o.client.send(
            new SendMessageBatchCommand({ QueueUrl: queueUrl, Entries: chunk }),
          );
          const failed = new Map((out.Failed ?? []).map((f) => [f.Id, f]));
          const confirmed = new Set((out.Successful ?? []).map((s) => s.Id));
          for (const { Id } of chunk) {
            const c = byId.get(Id);
            const f = failed.get(Id);
            if (f?.SenderFault) c?.done(new SqsPublishRejectedError(queueUrl, [f]));
            else if (f || !confirmed.has(Id))
              c?.done(
                new Error(`SQS did not take the copy: ${f?.Code ?? 'not confirmed'} ${f?.Message ?? ''}`),
              );
            else c?.done();
          }
        } catch (err) {
          for (const { Id } of chunk) byId.get(Id)?.done(asError(err));
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
   * Runs `step` until it succeeds, backing off while it fails (SQS is down) and holding `h` meanwhile
   * (the heartbeat extends it): letting it go would spend receives until SQS's redrive policy moved it
   * without our record. Rethrows a refusal no retry changes; throws {@link Abandoned} when the
   * consumer closes first or `h` was handed back (close() hands `h` back: the next consumer goes on).
   */
  async function durably(h: Held, what: string, step: () => Promise<void>): Promise<void> {
    for (let round = 1; ; round++) {
      if (h.state !== 'held') throw new Abandoned(`${what}: the message was handed back`);
      try {
        await step();
        return;
      } catch (failure) {
        if (failure instanceof SqsPublishRejectedError || isRefusedMessage(failure)) throw failure;
        log.error(
          { err: failure, round, messageId: h.message.MessageId },
          `${what} failed; holding the message and trying again`,
        );
        if (stop.signal.aborted || h.state !== 'held') throw new Abandoned(`${what}: the consumer closed`);
        await pause(backoffDelayMs(round, o.retryMinMs, o.retryMaxMs), stop.signal);
        if (isQueueMissing(failure) && !stop.signal.aborted) await redeclare();
      }
    }
  }

  /** The entry of a copy of `message` sent back to its queue as `state`, due after `delayMs`. */
  function copyEntry(
    message: Message,
    state: Required<DeliveryState>,
    delayMs: number,
  ): Omit<SendMessageBatchRequestEntry, 'Id'> {
    const delay = Math.max(0, delayMs);
    return {
      MessageBody: message.Body ?? '',
      MessageAttributes: copyAttributes(headersOf(message), {
        ...state,
        // Longer than SQS can delay a message: the copy says when it is due (see handleSingle).
        notBefore: delay > MAX_DELAY_SECONDS * 1_000 ? Date.now() + delay : undefined,
      }),
      DelaySeconds: Math.min(MAX_DELAY_SECONDS, Math.ceil(delay / 1_000)),
    };
  }

  /**
   * A snooze or park of a lone message on a standard queue: a copy with its state (its first receive
   * is the same attempt), then the original deleted. A copy SQS refuses for good (a message at the
   * size limit, which our attributes push over): handed back by visibility instead — which SQS counts
   * as a receive, so the attempt is spent, but the message is never stuck.
   */
  async function replaceWithCopy(h: Held, next: Required<DeliveryState>, delayMs: number): Promise<void> {
    if (h.state !== 'held') return; // handed back at close: another consumer's now
    try {
      await durably(h, 'handing a message back as a copy', () =>
        sendCopy(copyEntry(h.message, next, delayMs)),
      );
    } catch (err) {
      if (err instanceof Abandoned) throw err;
      log.error(
        { err, messageId: h.message.MessageId },
        'sqs refused the copy of a snoozed message; handed back by visibility (counts as a receive)',
      );
      return retryLater(h, delayMs);
    }
    await durably(h, 'deleting a message replaced by its copy', async () => {
      const result = await deleteMessage(h);
      // Refused (the receipt is stale): it comes back once more, a duplicate the inbox absorbs.
      if (result === 'failed') throw new Error('the delete did not reach SQS');
    });
    settle(h);
  }

  /** A retry of a lone message on a standard queue: visible again after the delay, its next receive the next attempt. */
  async function retryLater(h: Held, delayMs: number): Promise<void> {
    if (h.state !== 'held') return; // handed back at close: another consumer's now
    settle(h);
    // SQS delays are whole seconds (at most 12 hours).
    await changeVisibility(h, Math.min(MAX_VISIBILITY_SECONDS, Math.ceil(Math.max(0, delayMs) / 1_000)));
  }

  /** A FIFO hand-back: the message stays held (heartbeat) and its group blocked while it waits. */
  async function waitInPlace(h: Held, delayMs: number): Promise<void> {
    await pause(delayMs, stop.signal);
    if (stop.signal.aborted || h.state !== 'held')
      throw new Abandoned('closing while a message waited in place');
  }

  /**
   * Copies `message` (a received one, or an event of a pack) to the DLQ — original body and
   * attributes, plus error, attempts and origin — durably (see durably()). A copy SQS refuses for good
   * is left out: the row, recorded before, holds the message.
   */
  async function copyToDlq(h: Held, message: Message, record: NewDeadLetter): Promise<void> {
    const error = new Error(record.error);
    try {
      await durably(h, 'copying a dead letter to the DLQ', async () => {
        const { queue, dlqUrl } = q();
        await o.client.send(
          new SendMessageCommand({
            QueueUrl: dlqUrl,
            MessageBody: message.Body ?? '',
            MessageAttributes: deadLetterAttributes(headersOf(message), error, record.attempts, queue),
            ...(o.fifo
              ? {
                  MessageGroupId: message.Attributes?.MessageGroupId ?? record.subjectId ?? record.id,
                  MessageDeduplicationId: message.MessageId ?? record.id,
                }
              : {}),
          }),
        );
      });
    } catch (err) {
      if (err instanceof Abandoned) throw err;
      log.error(
        { err, deadLetterId: record.id },
        'the DLQ refused the dead letter; it is in the dead-letter table only',
      );
    }
  }

  /** The core's view of `message` (a lone message, or one event of a pack) received as attempt `state`. */
  function inboundParts(
    message: Message,
    state: Required<DeliveryState>,
    subjectId: () => string | null,
  ): InboundParts {
    const headers = headersOf(message);
    return {
      state,
      deadLetter: (error, attempts) => deadLetterRecord(q().queue, message, error, attempts, subjectId()),
      log: {
        messageId: message.MessageId,
        eventId: headers[EventHeaders.eventId],
        correlationId: headers[EventHeaders.correlationId],
      },
    };
  }

  /** A message received beyond its last attempt: the earlier ones never finished (the consumer crashed on it). */
  const crashed = (received: number): Outcome => ({
    kind: 'poison',
    error: new PoisonMessageError(
      `received ${received} times, its last attempt never finished (the consumer crashed or was stopped)`,
    ),
  });

  /**
   * Runs the handler on one event of `message`, or — received beyond its last attempt — settles it as
   * dead without running it (the state then names the last attempt that started).
   */
  function runOrBury(
    inbound: Inbound,
    message: Message,
    setSubject: (key: string) => void,
  ): Promise<Verdict> {
    const { attempt } = inbound.state;
    if (attempt > core.policy.maxAttempts)
      return core.settle(
        { ...inbound, state: { ...inbound.state, attempt: attempt - 1 } },
        crashed(receiveCountOf(message)),
      );
    return core.deliver(inbound, async () => {
      const event = decodeEvent(message.Body);
      setSubject(event.key);
      await o.handler(event, { attempt, transport: 'sqs', trace: carrierFromHeaders(headersOf(message)) });
    });
  }

  /** One event in one message (a lone event, an event split out of a pack, anything foreign). */
  async function handleSingle(h: Held): Promise<void> {
    const received = receivedState(h.message);
    let state: Required<DeliveryState> = { attempt: received.attempt, snoozes: received.snoozes };
    if (!o.fifo && received.notBefore !== undefined && received.notBefore - Date.now() > 1_000) {
      // A copy whose delay SQS could not hold: sent again for the rest, nothing else changed.
      return replaceWithCopy(h, state, received.notBefore - Date.now());
    }
    let subjectId: string | null = headersOf(h.message)[SqsHeaders.key] ?? null;
    for (;;) {
      /** FIFO: the state this message is tried again as, in place, after a hand-back. */
      let again: Required<DeliveryState> | undefined;
      const inbound: Inbound = {
        ...inboundParts(h.message, state, () => subjectId),
        actions: {
          ack: async () => finish(h),
          handBack: async (delayMs, next, why) => {
            if (o.fifo) {
              await waitInPlace(h, delayMs);
              again = next;
            } else if (why === 'retry') await retryLater(h, delayMs);
            else await replaceWithCopy(h, next, delayMs);
          },
          copyToDeadLetters: (record) => copyToDlq(h, h.message, record),
        },
      };
      await runOrBury(inbound, h.message, (key) => (subjectId = key));
      if (!again) return;
      state = again;
    }
  }

  /**
   * A pack: every event goes to the handler at once (the projector coalesces them), each as the pack's
   * attempt, and the core settles each on its own: one that is to be tried again is split out into a
   * message of its own with its state (`x-prior-attempts`, `x-snoozes`, the delay as DelaySeconds),
   * from where it goes on like a lone event; one the core dead-letters is copied to the DLQ alone. The
   * pack is deleted once every event is settled; the others are not redelivered.
   */
  async function handlePack(h: Held): Promise<void> {
    const received = receivedState(h.message);
    const state = { attempt: received.attempt, snoozes: received.snoozes };
    let items: Message[];
    try {
      items = unpack(h.message);
    } catch (err) {
      // Not a pack we can read: the message as a whole is poison.
      await core.settle(
        {
          ...inboundParts(h.message, state, () => null),
          actions: {
            ack: async () => finish(h),
            handBack: (delayMs, next, why) =>
              why === 'retry' ? retryLater(h, delayMs) : replaceWithCopy(h, next, delayMs),
            copyToDeadLetters: (record) => copyToDlq(h, h.message, record),
          },
        },
        { kind: 'poison', error: asError(err) },
      );
      return;
    }
    const settled = await Promise.allSettled(
      items.map((item) => {
        let subjectId: string | null = headersOf(item)[SqsHeaders.key] ?? null;
        const inbound: Inbound = {
          ...inboundParts(item, state, () => subjectId),
          actions: {
            // The pack is deleted once all its events are settled.
            ack: async () => undefined,
            handBack: (delayMs, next) =>
              durably(h, 'splitting a failed event out of its pack', () =>
                sendCopy(copyEntry(item, next, delayMs)),
              ),
            copyToDeadLetters: (record) => copyToDlq(h, item, record),
          },
        };
        return runOrBury(inbound, item, (key) => (subjectId = key));
      }),
    );
    const failed = settled.find((s) => s.status === 'rejected');
    if (failed) throw failed.reason;
    finish(h);
  }

  async function handle(h: Held): Promise<void> {
    // Never started: close() hands it back once no poll is left that could receive it again.
    if (h.state !== 'held' || stop.signal.aborted) return;
    try {
      // Packs only ever reach standard queues (the publisher sends FIFO events one by one).
      if (!o.fifo && isPack(h.message)) await handlePack(h);
      else await handleSingle(h);
    } catch (err) {
      if (err instanceof Abandoned) return; // close() hands it back
      // A hand-back or delete SQS refused for good: let it go; SQS delivers it again after its
      // visibility timeout (a receive, so it then counts as the next attempt).
      log.error(
        { err, messageId: h.message.MessageId },
        'sqs message could not be settled; it comes back after its visibility timeout',
      );
      settle(h);
    }
  }

  function dispatch(h: Held): void {
    if (!o.fifo) return track(handle(h));
    const group = h.message.Attributes?.MessageGroupId ?? '';
    const previous = chains.get(group) ?? Promise.resolve();
    const next = previous.catch(() => undefined).then(() => handle(h));
    chains.set(group, next);
    track(next.finally(() => chains.get(group) === next && chains.delete(group)));
  }

  /** Declares the group's queues again (one was deleted under us); failures are left to the next try. */
  async function redeclare(): Promise<void> {
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
    if (isQueueMissing(err) && !stop.signal.aborted) await redeclare();
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
          await Promise.allSettled(left.map((h) => handBackNow(h)));
        }
        clearInterval(heartbeat);
        if (pendingDeletes.length > 0) await flushDeletes();
        await supervisor;
      })();
      return closing;
    },
  };
}
