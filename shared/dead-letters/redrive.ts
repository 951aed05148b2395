import { carrierFromHeaders } from '../observability/tracing/trace-context.ts';
import type { JobsOptions, Queue } from 'bullmq';
import type { EventBus } from '../bus/event-bus.ts';
import type { CommandQueue } from '../queue/command-queue.ts';
import type { DeadLetterRecord } from './dead-letter.ts';
import { eventOfOutboxDeadLetter, OUTBOX_ORIGIN } from '../delivery/refusal.ts';

/** A module's command queue as a redrive sees it: where its commands go back, and its dead-letter copies. */
export interface RedriveTarget {
  queue: CommandQueue;
  /** Holds the dead letters' copies for Bull Board: the copy is removed once redriven. */
  deadLetterQueue: Queue;
  jobName: string;
  jobOptions: JobsOptions;
}

export interface RedriveDeps {
  /** Each module's command queue by name (= a command dead letter's origin). */
  commands: (origin: string) => RedriveTarget | undefined;
  /** The event bus of each transport, created on first use. */
  bus: (transport: DeadLetterRecord['transport']) => Promise<EventBus>;
}

export type Redriver = (deadLetter: DeadLetterRecord) => Promise<void>;

/**
 * Whether the job under a command dead letter's job id is one a redrive already sent: waiting, delayed,
 * active, or finished otherwise than as this dead letter. The job that dead-lettered (completed with
 * `{ deadLetterId }`, or failed) or none at all is not: the redrive replaces it. A redrive sent again
 * after a crash (its send acknowledged, its claim never committed) is then no second job. One gap
 * remains: a redriven job that completed and was already trimmed (`keepCompletedSeconds`) is added
 * again, and its idempotent processing decides nothing twice.
 */
async function sentAlready(queue: CommandQueue, jobId: string, deadLetterId: string): Promise<boolean> {
  const job = await queue.getJob(jobId);
  if (!job) return false;
  const state = await job.getState();
  if (state === 'failed' || state === 'unknown') return false;
  if (state !== 'completed') return true;
  const value: unknown = job.returnvalue;
  const deadLettered =
    typeof value === 'object' &&
    value !== null &&
    (value as { deadLetterId?: unknown }).deadLetterId === deadLetterId;
  return !deadLettered;
}

/**
 * Sends a dead letter back to its origin: a command to its module's queue (same job id, fresh
 * attempts) unless a redrive already sent it there, an event to its bus (its consumers are idempotent by
 * event id, so an event sent twice is applied once). Processing stays idempotent, so a redrive never
 * doubles an effect.
 */
export function createRedriver(deps: RedriveDeps): Redriver {
  return async (dl) => {
    if (dl.kind === 'command') {
      const target = deps.commands(dl.origin);
      if (!target) throw new Error(`no command queue ${dl.origin}: is its module still registered?`);
      const jobId = dl.messageKey ?? undefined;
      if (jobId) {
        if (await sentAlready(target.queue, jobId, dl.id)) {
          await target.deadLetterQueue.remove(dl.id).catch(() => undefined);
          return;
        }
        await target.queue.remove(jobId).catch(() => undefined);
      }
      const data: unknown = JSON.parse(dl.payload.toString('utf8'));
      // Back into the trace it came from: the dead letter kept the job's trace headers.
      const carrier = carrierFromHeaders(dl.headers);
      await target.queue.add(target.jobName, data, {
        ...target.jobOptions,
        ...(jobId ? { jobId } : {}),
        ...(carrier ? { telemetry: { metadata: JSON.stringify(carrier) } } : {}),
      });
      await target.deadLetterQueue.remove(dl.id).catch(() => undefined);
      return;
    }
    const bus = await deps.bus(dl.transport);
    // Quarantined by the relay (the bus refused it for good): published again to every group, like
    // the relay would have; a broker that still refuses it fails the redrive, which reopens it.
    if (dl.origin === OUTBOX_ORIGIN) await bus.publish([eventOfOutboxDeadLetter(dl)]);
    else await bus.redrive(dl);
  };
}
