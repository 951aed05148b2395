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
 * Sends a dead letter back to its origin: a command to its module's queue (same job id, fresh
 * attempts), an event to its bus. Processing stays idempotent, so a redrive never doubles an effect.
 */
export function createRedriver(deps: RedriveDeps): Redriver {
  return async (dl) => {
    if (dl.kind === 'command') {
      const target = deps.commands(dl.origin);
      if (!target) throw new Error(`no command queue ${dl.origin}: is its module still registered?`);
      const jobId = dl.messageKey ?? undefined;
      if (jobId) await target.queue.remove(jobId).catch(() => undefined);
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
