import { createHash } from 'node:crypto';
import type { Job, JobsOptions, Queue } from 'bullmq';
import type { NewDeadLetter } from '../../dead-letters/dead-letter.ts';
import type { DeliveryCore, Inbound, TransportActions } from '../../delivery/core.ts';
import { contentId, deadLetterId } from '../../delivery/dead-letter.ts';
import { PoisonMessageError } from '../../delivery/outcome.ts';
import { asError } from '../../runtime/lifecycle.ts';
import type { DeliveryState } from '../../delivery/policy.ts';
import type { Logger } from '../../observability/logger.ts';
import { carrierFromHeaders, type TraceCarrier } from '../../observability/tracing/trace-context.ts';
import type { EventEnvelope } from '../../domain/events.ts';
import {
  activeJobActions,
  deadLetterFailedJob,
  failedForGood,
  jobResult,
  pendingDeadLetterOf,
} from '../../queue/job-delivery.ts';
import { decodeEvent, EventHeaders } from '../codec.ts';
import type { EventHandler } from '../event-bus.ts';
import {
  eventJobState,
  EVENT_BATCH_JOB,
  EVENT_PACK_JOB,
  jobMessage,
  packedMessage,
  packedTrace,
  unpackEvent,
  type BullmqEventBatchJob,
  type BullmqEventJob,
  type BullmqEventPackJob,
} from './job-delivery.ts';

export interface EventConsumerDeps {
  /** The group's queue: the dead letters' origin, where split-outs go. */
  queueName: string;
  queue: Pick<Queue, 'add'>;
  /** `events-dead-letters`: the copies for Bull Board. */
  deadLetterQueue: Pick<Queue, 'add'>;
  /** The group's delivery core: every decision about a failure is its. */
  core: DeliveryCore;
  handler: EventHandler;
  /** Options of the jobs this consumer adds (split-outs). */
  jobOptions: JobsOptions;
  logger: Logger;
}

export interface EventConsumer {
  /** The BullMQ processor: returns to complete the job, throws `DelayedError` after handing it back. */
  process(job: Job, token?: string): Promise<unknown>;
  /** The worker's `failed` listener: a job BullMQ failed for good by itself is dead-lettered. */
  onFailed(job: Job | undefined, err: Error): void;
}

/** How the items of a batch or pack job are read: the event, its trace, its bytes (failures only). */
interface ItemReader {
  event(item: unknown, index: number): EventEnvelope;
  trace(item: unknown, index: number): TraceCarrier | undefined;
  message(item: unknown, index: number): { payload: Buffer; headers: Record<string, string> };
}

/** Items of a batch job: `{ body, headers }` (the happy path reads only the body and the trace headers). */
const BATCH_READER: ItemReader = {
  event(item) {
    const { body } = (item ?? {}) as Partial<BullmqEventJob>;
    return decodeEvent(typeof body === 'string' ? body : undefined);
  },
  trace: (item) => carrierFromHeaders((item as Partial<BullmqEventJob> | null | undefined)?.headers),
  message: (item) => jobMessage(item),
};

/** Items of a pack job: the events themselves, their traces alongside. */
function packReader(pack: BullmqEventPackJob): ItemReader {
  return {
    event: (item) => unpackEvent(item),
    trace: (_item, index) => packedTrace(pack, index),
    message: (_item, index) => packedMessage(pack, index),
  };
}

/** A job's dead letter, once recorded and copied: what the completed job returns (Bull Board shows it). */
interface Settled {
  deadLetterId?: string;
}

/**
 * The BullMQ side of one subscription group: a transport adapter of the delivery core. It gives the
 * core each job's state (from the job: {@link eventJobState}) and three primitives — ack = the
 * processor returns and the job completes; hand back = the job moves to `delayed` carrying its next
 * state (one script) and the processor throws `DelayedError` (shared/queue/job-delivery.ts, as the
 * command worker does); copy = an `events-dead-letters` job — and decides nothing itself. BullMQ never retries a job because of a failure the core judged, so no
 * job ends in `failed` for it; what BullMQ fails by itself (stalled more than `maxStalledCount`, or its
 * safety-net attempts used up by a transport failure) is dead-lettered by {@link EventConsumer.onFailed}.
 */
export function createEventConsumer(deps: EventConsumerDeps): EventConsumer {
  const { core, queueName } = deps;
  const log = deps.logger.child({ component: 'bullmq-bus', queue: queueName });

  /** The dead letter of one message: id from its event id (stable across redrives), else its bytes. */
  function letter(
    message: { payload: Buffer; headers: Record<string, string> },
    error: Error,
    attempts: number,
    subjectId: string | null,
    firstFailedAt: Date,
  ): NewDeadLetter {
    const eventId = message.headers[EventHeaders.eventId];
    return {
      id: deadLetterId({
        transport: 'bullmq',
        origin: queueName,
        messageId: eventId ?? contentId(message.payload),
      }),
      transport: 'bullmq',
      origin: queueName,
      kind: 'event',
      messageKey: eventId ?? null,
      payload: message.payload,
      headers: message.headers,
      error: error.message,
      stack: error.stack ?? null,
      attempts,
      correlationId: message.headers[EventHeaders.correlationId] ?? null,
      subjectId,
      firstFailedAt,
    };
  }

  async function copyToDeadLetters(record: NewDeadLetter, settled: Settled): Promise<void> {
    // Job id = dead letter id: a copy already there (an earlier try of this dead letter) is kept.
    await deps.deadLetterQueue.add(
      'dead-letter',
      {
        deadLetterId: record.id,
        body: record.payload.toString('utf8'),
        headers: record.headers,
        error: record.error,
        attempts: record.attempts,
      },
      { jobId: record.id },
    );
    settled.deadLetterId = record.id;
  }

  /** A job as the core sees it, with the actions `actions` gives it. */
  function jobInbound(
    job: Job,
    state: Required<DeliveryState>,
    actions: Omit<TransportActions, 'copyToDeadLetters'>,
    subject: () => string | null = () => null,
  ): { inbound: Inbound; settled: Settled } {
    const settled: Settled = {};
    const headers = (job.data as Partial<BullmqEventJob> | undefined)?.headers;
    const inbound: Inbound = {
      state,
      actions: { ...actions, copyToDeadLetters: (record) => copyToDeadLetters(record, settled) },
      // Read from the job only when needed: nothing is copied on the way to success.
      deadLetter: (error, attempts) =>
        letter(jobMessage(job.data), error, attempts, subject(), new Date(job.processedOn ?? job.timestamp)),
      log: {
        jobId: job.id,
        eventId: headers?.[EventHeaders.eventId],
        correlationId: headers?.[EventHeaders.correlationId],
      },
    };
    return { inbound, settled };
  }

  /** The job the processor holds: completes when the processor returns, handed back to `delayed`. */
  function activeJob(job: Job, token: string | undefined, subject?: () => string | null) {
    return jobInbound(job, eventJobState(job), activeJobActions(job, token), subject);
  }

  async function one(job: Job<BullmqEventJob>, token: string | undefined): Promise<unknown> {
    let subjectId: string | null = null;
    const { inbound, settled } = activeJob(job, token, () => subjectId);
    const verdict = await core.deliver(inbound, async () => {
      const body: unknown = job.data?.body;
      const event = decodeEvent(typeof body === 'string' ? body : undefined);
      subjectId = event.key;
      await deps.handler(event, {
        attempt: inbound.state.attempt,
        transport: 'bullmq',
        trace: carrierFromHeaders(job.data?.headers),
      });
    });
    return jobResult(verdict, settled);
  }

  /**
   * Every event of a batch or pack job goes to the handler at once (the projector coalesces them);
   * each one that failed gets its own verdict. Handing an item back splits it out as its own job
   * (delayed, carrying its next state; its job id stable for a re-run of this job), acknowledging one
   * is nothing. The job completes once every item is settled, and throws — not completed, so its items
   * are not lost — when a split-out or a dead letter's copy could not be added.
   */
  async function many(
    job: Job,
    token: string | undefined,
    items: unknown,
    read: ItemReader,
  ): Promise<unknown> {
    if (!Array.isArray(items)) {
      // Not a batch we wrote: its bytes go to the dead letters rather than complete it empty.
      const { inbound, settled } = activeJob(job, token);
      const error = new PoisonMessageError('event batch job without an events array');
      return jobResult(await core.settle(inbound, { kind: 'poison', error }), settled);
    }
    const events = items as unknown[];
    const subjects: (string | null)[] = events.map(() => null);
    const results = await Promise.allSettled(
      events.map(async (item, index) => {
        const event = read.event(item, index);
        subjects[index] = event.key;
        await deps.handler(event, { attempt: 1, transport: 'bullmq', trace: read.trace(item, index) });
      }),
    );
    const failed = results.flatMap((r, index) =>
      r.status === 'rejected' ? [{ index, reason: r.reason as unknown }] : [],
    );
    if (failed.length === 0) return undefined;
    const settlements = await Promise.allSettled(
      failed.map(async ({ index, reason }) => {
        const message = read.message(events[index], index);
        const { inbound, settled } = itemInbound(job, message, index, subjects[index] ?? null);
        await core.settleFailure(inbound, reason);
        return settled.deadLetterId;
      }),
    );
    const refused = settlements.find((s) => s.status === 'rejected');
    if (refused) {
      log.warn(
        { jobId: job.id, err: refused.reason as unknown },
        'a failed event of a batch job could not be handed back; the batch job is not completed',
      );
      throw asError(refused.reason);
    }
    const deadLetterIds = settlements.flatMap((s) => (s.status === 'fulfilled' && s.value ? [s.value] : []));
    log.debug(
      { jobId: job.id, failed: failed.length, of: events.length },
      'failed events of a batch job settled',
    );
    return deadLetterIds.length > 0 ? { deadLetterIds } : undefined;
  }

  /** One event of a batch job: its first delivery; handed back as a job of its own. */
  function itemInbound(
    job: Job,
    message: { payload: Buffer; headers: Record<string, string> },
    index: number,
    subjectId: string | null,
  ): { inbound: Inbound; settled: Settled } {
    const settled: Settled = {};
    // Stable across re-runs of this batch job (a stall, BullMQ's safety net), distinct for a new job
    // under the same id (the relay's retry of a batch after the first was removed): `timestamp`.
    const jobId = `evs-${createHash('sha256')
      .update(`${job.id}|${job.timestamp}|${index}`)
      .digest('hex')
      .slice(0, 40)}`;
    const inbound: Inbound = {
      state: { attempt: 1, snoozes: 0 },
      actions: {
        ack: async () => undefined,
        handBack: async (delayMs, next) => {
          const data: BullmqEventJob = {
            body: message.payload.toString('utf8'),
            headers: message.headers,
            attempt: next.attempt,
            snoozes: next.snoozes,
          };
          await deps.queue.add(message.headers[EventHeaders.eventType] ?? 'event', data, {
            ...deps.jobOptions,
            delay: Math.max(0, Math.round(delayMs)),
            jobId,
          });
        },
        copyToDeadLetters: (record) => copyToDeadLetters(record, settled),
      },
      deadLetter: (error, attempts) =>
        letter(message, error, attempts, subjectId, new Date(job.processedOn ?? job.timestamp)),
      log: {
        jobId: job.id,
        index,
        eventId: message.headers[EventHeaders.eventId],
        correlationId: message.headers[EventHeaders.correlationId],
      },
    };
    return { inbound, settled };
  }

  async function process(job: Job, token?: string): Promise<unknown> {
    const pending = pendingDeadLetterOf(job);
    if (pending) {
      // BullMQ failed it by itself and its dead letter could not be recorded then: record it now.
      const { inbound, settled } = activeJob(job, token);
      return jobResult(await core.settle(inbound, { kind: 'poison', error: pending }), settled);
    }
    if (job.name === EVENT_PACK_JOB) {
      const pack = (job.data ?? {}) as BullmqEventPackJob;
      return many(job, token, pack.packed, packReader(pack));
    }
    if (job.name === EVENT_BATCH_JOB) {
      return many(job, token, (job.data as Partial<BullmqEventBatchJob> | undefined)?.events, BATCH_READER);
    }
    return one(job as Job<BullmqEventJob>, token);
  }

  return {
    process,
    onFailed(job, err) {
      // What BullMQ failed for good by itself is dead-lettered through the core, never left in `failed`.
      if (!failedForGood(job, err)) return;
      void deadLetterFailedJob(
        core,
        job,
        err,
        (actions) => jobInbound(job, eventJobState(job), actions).inbound,
        log,
      );
    },
  };
}
