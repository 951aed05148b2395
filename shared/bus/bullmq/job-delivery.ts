import type { Job } from 'bullmq';
import type { DeliveryState } from '../../delivery/policy.ts';

/** What travels in a BullMQ event job: the same bytes and headers as on Kafka or RabbitMQ. */
export interface BullmqEventJob {
  body: string;
  headers: Record<string, string>;
  /**
   * Where a job split out of a batch job starts (its first delivery here is this attempt, after
   * this many snoozes). Later hand-backs keep the state in the job's progress ({@link JobProgress}).
   * Absent: attempt 1, no snooze.
   */
  attempt?: number;
  snoozes?: number;
  /** Written by versions before the delivery core: deliveries inside a batch job before the split-out. */
  priorAttempts?: number;
}

/** Several events in one BullMQ job: the relay publishes a batch for the Redis cost of one job. */
export interface BullmqEventBatchJob {
  events: BullmqEventJob[];
}

/** Job name of a batch job; every other name is one event (its type). */
export const EVENT_BATCH_JOB = 'event-batch';

/** A dead letter the `failed` listener could not finish: the processor dead-letters the job at once. */
export interface PendingDeadLetter {
  error: string;
  stack: string | null;
}

/**
 * A job's delivery state, kept in its `progress` (Bull Board shows it): written by every hand-back in
 * the same script that moves the job to `delayed` — one Redis call, no window where the state and the
 * move disagree, and a few bytes instead of the job's data again. A snooze during a PostgreSQL outage
 * happens to thousands of jobs: measured on 5,000 ~1 KB order events, a delivery handed back with
 * `updateData` + `moveToDelayed` costs 3 scripts (with the fetch) and ~0.9 KB more traffic than a bare
 * `moveToDelayed`; this costs what the bare one does, 2 scripts, and ~80 B more.
 */
export interface JobProgress {
  attempt: number;
  snoozes: number;
  /** Set when BullMQ failed the job by itself (stalled too often): dead-letter it, do not run it. */
  deadLetter?: PendingDeadLetter;
}

const count = (value: unknown, min: number): number | undefined =>
  typeof value === 'number' && Number.isSafeInteger(value) && value >= min ? value : undefined;

function progressOf(job: Job): Partial<JobProgress> {
  const progress: unknown = job.progress;
  return typeof progress === 'object' && progress !== null ? (progress as Partial<JobProgress>) : {};
}

/**
 * Which delivery of the job this is: its progress (a hand-back wrote it), else what it was created
 * with (a split-out), else the first. BullMQ's own counters are not ours: `attemptsMade` counts only
 * the failures BullMQ handled (its safety net), `attemptsStarted` every start including snoozes and
 * stalls, `stalledCounter` the stalls, which BullMQ limits itself (`maxStalledCount`).
 */
export function deliveryStateOf(job: Job): Required<DeliveryState> {
  const progress = progressOf(job);
  const fromProgress = count(progress.attempt, 1);
  if (fromProgress !== undefined) return { attempt: fromProgress, snoozes: count(progress.snoozes, 0) ?? 0 };
  const data = (job.data ?? {}) as Partial<BullmqEventJob>;
  const fromData = count(data.attempt, 1);
  if (fromData !== undefined) return { attempt: fromData, snoozes: count(data.snoozes, 0) ?? 0 };
  // A split-out of a version before the delivery core: its batch deliveries counted as attempts.
  return { attempt: 1 + (count(data.priorAttempts, 0) ?? 0), snoozes: 0 };
}

/** The dead letter the `failed` listener left for the processor, if any. */
export function pendingDeadLetterOf(job: Job): PendingDeadLetter | undefined {
  const pending = progressOf(job).deadLetter;
  return typeof pending?.error === 'string'
    ? { error: pending.error, stack: typeof pending.stack === 'string' ? pending.stack : null }
    : undefined;
}

/**
 * Hands an active job back: `delayed` for `delayMs`, its progress set to `next` (a pending dead letter
 * kept), BullMQ's `attemptsMade` untouched — in one script (`moveToDelayed` with the fields to update,
 * which BullMQ's own retry uses; `Job.moveToDelayed` takes no fields). The processor must then throw
 * BullMQ's `DelayedError`. Rejects when the job's lock (`token`) is lost or Redis fails.
 */
export async function handBackJob(
  job: Job,
  token: string | undefined,
  delayMs: number,
  next: Required<DeliveryState>,
): Promise<void> {
  if (!job.id) throw new Error('a job without an id cannot be handed back');
  const pending = pendingDeadLetterOf(job);
  const progress: JobProgress = { attempt: next.attempt, snoozes: next.snoozes };
  if (pending) progress.deadLetter = pending;
  // `scripts` is protected: the element access keeps it type-checked against BullMQ's declarations.
  await job['scripts'].moveToDelayed(job.id, Date.now(), Math.max(0, Math.round(delayMs)), token, {
    skipAttempt: true,
    fieldsToUpdate: { progress: JSON.stringify(progress) },
  });
}

/**
 * Sends a job BullMQ failed by itself back to the queue, marked so the processor dead-letters it
 * (through the delivery core, parking it while the dead letter cannot be recorded) instead of running it.
 */
export async function sendBackToDeadLetter(
  job: Job,
  state: Required<DeliveryState>,
  error: Error,
): Promise<void> {
  const progress: JobProgress = {
    ...state,
    deadLetter: { error: error.message, stack: error.stack ?? null },
  };
  await job.updateProgress(progress);
  await job.retry('failed');
}

/** The bytes and headers a job carries: one event's, or (not one we wrote) its data as JSON. */
export function jobMessage(data: unknown): { payload: Buffer; headers: Record<string, string> } {
  const item = (typeof data === 'object' && data !== null ? data : {}) as Partial<BullmqEventJob>;
  const headers: Record<string, string> = {};
  if (typeof item.headers === 'object' && item.headers !== null) {
    for (const [name, value] of Object.entries(item.headers as Record<string, unknown>)) {
      if (typeof value === 'string') headers[name] = value;
    }
  }
  const payload = Buffer.from(typeof item.body === 'string' ? item.body : JSON.stringify(data ?? null));
  return { payload, headers };
}
