import { DelayedError, type Job } from 'bullmq';
import type { DeliveryCore, Inbound, TransportActions } from '../delivery/core.ts';
import type { DeliveryState, Verdict } from '../delivery/policy.ts';
import type { Logger } from '../observability/logger.ts';

/*
 * A BullMQ job as a message of the delivery core (shared/delivery) — the one way the command worker
 * (workers/commands) and the BullMQ event bus (shared/bus/bullmq) carry a job's `{attempt, snoozes}`,
 * hand it back, and dead-letter a job BullMQ failed by itself. What the API and the console show as a
 * queued job's attempts is read here too ({@link attemptsMadeOf}).
 */

/** A dead letter the `failed` listener could not record: the processor dead-letters the job at once. */
export interface PendingDeadLetter {
  error: string;
  stack: string | null;
}

/**
 * A job's delivery state, kept in its `progress` (Bull Board shows it; the job's data stays as it
 * came): written by every hand-back in the same script that moves the job to `delayed` — one Redis
 * call, no window where the state and the move disagree, and a few bytes instead of the job's data
 * again. A snooze during a PostgreSQL outage happens to thousands of jobs: measured on 5,000 ~1 KB
 * order events, a delivery handed back with `updateData` + `moveToDelayed` costs 3 scripts (with the
 * fetch) and ~0.9 KB more traffic than a bare `moveToDelayed`; this costs what the bare one does, 2
 * scripts, and ~80 B more. BullMQ's `attemptsMade` cannot carry the state: a hand-back leaves it as
 * it is (the move's skip-attempt flag), so our retries are never counted there.
 */
export interface JobProgress {
  /** The attempt the job's next (or current) delivery is: 1 = first. */
  attempt: number;
  /** Snoozes and parks so far: grows the next snooze's delay. */
  snoozes: number;
  /** Set when BullMQ failed the job by itself and its dead letter could not be recorded then. */
  deadLetter?: PendingDeadLetter;
  /** The failure the last hand-back was for (BullMQ's `failedReason` is set only by failures it handles). */
  lastError?: string;
}

const FIRST_DELIVERY: Required<DeliveryState> = { attempt: 1, snoozes: 0 };

const count = (value: unknown, min: number): number | undefined =>
  typeof value === 'number' && Number.isSafeInteger(value) && value >= min ? value : undefined;

/** What a job's progress says, read leniently: any field may be missing, or written by someone else. */
function carriedBy(job: Job): Partial<JobProgress> {
  const progress: unknown = job.progress;
  if (typeof progress !== 'object' || progress === null) return {};
  const p = progress as { attempt?: unknown; snoozes?: unknown; deadLetter?: unknown; lastError?: unknown };
  const carried: Partial<JobProgress> = {};
  const dl = p.deadLetter as { error?: unknown; stack?: unknown; attempts?: unknown } | null | undefined;
  if (typeof dl === 'object' && dl !== null && typeof dl.error === 'string') {
    carried.deadLetter = { error: dl.error, stack: typeof dl.stack === 'string' ? dl.stack : null };
    // The command worker's release before the delivery core wrote only this, its attempts inside.
    const attempts = count(dl.attempts, 0);
    if (attempts !== undefined) carried.attempt = attempts;
  }
  const attempt = count(p.attempt, 1);
  if (attempt !== undefined) carried.attempt = attempt;
  const snoozes = count(p.snoozes, 0);
  if (snoozes !== undefined) carried.snoozes = snoozes;
  if (typeof p.lastError === 'string') carried.lastError = p.lastError;
  return carried;
}

/** BullMQ completed or failed the job (and has not been asked to run it again since). */
const finished = (job: Job): boolean => Boolean(job.finishedOn);

/**
 * Where a job's delivery stands: which attempt its next (or current, or last if finished) delivery
 * is, and how often it was snoozed. Ours — the progress a hand-back wrote, else `start` — counts every
 * retry the core decided. BullMQ's `attemptsMade`, on top of `start`, counts only the failures BullMQ
 * handled itself: its safety net (a hand-back Redis refused) and every retry of a release before the
 * delivery core, so a job such a release left behind keeps its count. The larger wins. A job sent back
 * to be dead-lettered is on the attempt that ended it.
 * @param start where a job no hand-back has written to starts (a bus split-out carries it in its
 *   data). @defaultValue attempt 1, no snooze
 */
export function deliveryStateOf(
  job: Job,
  start: Required<DeliveryState> = FIRST_DELIVERY,
): Required<DeliveryState> {
  const carried = carriedBy(job);
  const snoozes = carried.snoozes ?? start.snoozes;
  // A finished job's `attemptsMade` counts the attempt that finished it (BullMQ counts it on completion too).
  const byBullmq = start.attempt + job.attemptsMade - (finished(job) ? 1 : 0);
  if (carried.deadLetter) return { attempt: Math.max(1, carried.attempt ?? byBullmq), snoozes };
  return { attempt: Math.max(1, carried.attempt ?? start.attempt, byBullmq), snoozes };
}

/**
 * The attempts a job has used, by our count: what the API and the console show (BullMQ's
 * `attemptsMade` no longer counts our retries). Those that ended: not the one running now, nor a
 * snooze (which gives its attempt back); a finished job's include the one that finished it.
 */
export function attemptsMadeOf(job: Job): number {
  const { attempt } = deliveryStateOf(job);
  return finished(job) || carriedBy(job).deadLetter ? attempt : attempt - 1;
}

/** The last failure of a job, ours (a retry or snooze the core decided) or BullMQ's: what the API and console show. */
export function lastErrorOf(job: Job): string | null {
  return carriedBy(job).lastError ?? (job.failedReason || null);
}

/** The dead letter the `failed` listener left for the processor, as the error it records, if any. */
export function pendingDeadLetterOf(job: Job): Error | undefined {
  const pending = carriedBy(job).deadLetter;
  return pending && Object.assign(new Error(pending.error), { stack: pending.stack ?? undefined });
}

/**
 * Hands an active job back: `delayed` for `delayMs`, its progress set to `next` (a pending dead letter
 * kept), BullMQ's `attemptsMade` untouched — in one script (`moveToDelayed` with the fields to update,
 * which BullMQ's own retry uses; `Job.moveToDelayed` takes no fields, so `updateProgress` before it
 * would cost a script more). The processor must then throw BullMQ's `DelayedError` ({@link jobResult}).
 * Rejects when the job's lock (`token`) is lost or Redis fails.
 */
export async function handBackJob(
  job: Job,
  token: string | undefined,
  delayMs: number,
  next: Required<DeliveryState>,
  error?: Error,
): Promise<void> {
  if (!job.id) throw new Error('a job without an id cannot be handed back');
  const pending = carriedBy(job).deadLetter;
  const progress: JobProgress = { attempt: next.attempt, snoozes: next.snoozes };
  if (pending) progress.deadLetter = pending;
  if (error) progress.lastError = error.message.slice(0, 1_000);
  // `scripts` is protected: the element access keeps it type-checked against BullMQ's declarations.
  await job['scripts'].moveToDelayed(job.id, Date.now(), Math.max(0, Math.round(delayMs)), token, {
    skipAttempt: true,
    fieldsToUpdate: { progress: JSON.stringify(progress), [STALLED_COUNTER]: 0 },
  });
}

/**
 * BullMQ's count of a job's stalls (the job hash's `stc`), which fails the job by itself past
 * `maxStalledCount`. BullMQ only ever adds to it, over the job's whole life; a hand-back sets it back
 * to 0 in its own script, and {@link clearStalls} does when a delivery otherwise came back. So it
 * counts stalls in a row of deliveries that never came back — a job that kills its workers — and not
 * the stalls of live workers a loaded machine starves past their locks, which a job snoozed through
 * a long outage would otherwise collect one by one until it was dead-lettered ("job stalled more
 * than allowable limit") through no fault of its own.
 */
const STALLED_COUNTER = 'stc';

/**
 * The primitives of the job a processor holds: ack = the processor returns (BullMQ completes it); hand
 * back = {@link handBackJob}. Either way the delivery came back, so the job's stall count is cleared
 * ({@link clearStalls}) where a hand-back does not already do it: on an ack of a job that stalled
 * before, and on a hand-back refused because the lock was lost meanwhile (a starved worker: the
 * stalled check took the job back while it still ran).
 */
export function activeJobActions(job: Job, token: string | undefined): TransportActions {
  return {
    ack: async () => {
      if (job.stalledCounter > 0) await clearStalls(job).catch(() => undefined);
    },
    async handBack(delayMs, next, _why, error) {
      try {
        await handBackJob(job, token, delayMs, next, error);
      } catch (err) {
        await clearStalls(job).catch(() => undefined);
        throw err;
      }
    },
  };
}

/** Sets a job's stall count to 0 if the job still exists (never recreating the hash of a removed job). */
const CLEAR_STALLS = `if redis.call('EXISTS', KEYS[1]) == 1 then redis.call('HSET', KEYS[1], '${STALLED_COUNTER}', 0) end return 0`;

/**
 * Sets the job's stall count ({@link STALLED_COUNTER}) back to 0: its delivery came back, whatever
 * became of it, so the worker did not die on it — even when the stalled check took the job back
 * meanwhile (a starved worker) and its hand-back or completion is refused for the lost lock.
 */
export async function clearStalls(job: Job): Promise<void> {
  if (!job.id) return;
  // `queue` is protected: the element access keeps it type-checked against BullMQ's declarations.
  const queue = job['queue'];
  const client = await queue.client;
  await client.eval(CLEAR_STALLS, 1, queue.toKey(job.id));
}

/**
 * What a processor does once the core carried out `verdict` on the job it holds: returns what the
 * completed job keeps — `{ deadLetterId }` once dead-lettered, `{ cancelled }` once cancelled, else
 * `value` — or, once handed back (retry, snooze, park), throws BullMQ's `DelayedError` so BullMQ
 * leaves the job in `delayed`. A dead-lettered job COMPLETES: nothing is left in `failed`.
 */
export function jobResult(
  verdict: Verdict,
  done: { value?: unknown; deadLetterId?: string | undefined },
): unknown {
  switch (verdict.action) {
    case 'ack':
      return verdict.cancelled ? { cancelled: verdict.cancelled.message } : done.value;
    case 'dead-letter':
      return { deadLetterId: done.deadLetterId };
    case 'retry':
    case 'snooze':
      throw new DelayedError();
  }
}

/**
 * Sends a job BullMQ failed by itself back to the queue, marked so the processor dead-letters it
 * (through the delivery core, parking it while the dead letter cannot be recorded) instead of running
 * it again (it may be what crashed the workers).
 */
export async function sendBackToDeadLetter(
  job: Job,
  state: Required<DeliveryState>,
  error: Error,
): Promise<void> {
  const progress: JobProgress = {
    attempt: state.attempt,
    snoozes: state.snoozes,
    deadLetter: { error: error.message, stack: error.stack ?? null },
  };
  await job.updateProgress(progress);
  await job.retry('failed');
}

/**
 * Whether a `failed` event is BullMQ's last word on the job — it failed it for good by itself:
 * stalled more than `maxStalledCount` (its own UnrecoverableError, no processor call), or its own
 * attempts used up after hand-backs Redis refused — so the job must be dead-lettered
 * ({@link deadLetterFailedJob}). A failure BullMQ retries itself is not final (the job is delayed).
 */
export function failedForGood(job: Job | undefined, err: Error): job is Job {
  if (!job) return false;
  return (
    job.finishedOn !== undefined ||
    err.name === 'UnrecoverableError' ||
    job.attemptsMade >= (job.opts.attempts ?? 1)
  );
}

/**
 * Dead-letters, through the core, a job BullMQ failed for good by itself: recorded and copied, then
 * removed from `failed` (its `ack`). When the dead letter cannot be recorded (the core parks it:
 * `handBack`), or anything after the record fails, the job is not left in `failed` (where
 * `removeOnFail` trims it): it is sent back marked ({@link sendBackToDeadLetter}) and the processor
 * dead-letters it, parking it meanwhile, no attempt consumed. Only when Redis refuses that too does it
 * stay in `failed`, logged, to be retried by hand. Never rejects.
 * @param message the job as the core sees it, given the failed job's actions.
 * @param log bound to the queue (the job's id is added).
 */
export async function deadLetterFailedJob(
  core: Pick<DeliveryCore, 'settle'>,
  job: Job,
  error: Error,
  message: (actions: TransportActions) => Inbound,
  log: Logger,
): Promise<void> {
  const fields = { jobId: job.id };
  const inbound = message({
    ack: () => job.remove(),
    async handBack(_delayMs, next) {
      // Back to waiting at once: the processor parks it with the core's delay.
      await sendBackToDeadLetter(job, next, error);
      log.error(
        { ...fields, err: error },
        'dead letter of a failed job not recorded; sent back to be parked',
      );
    },
  });
  try {
    await core.settle(inbound, { kind: 'poison', error });
    return;
  } catch (settleErr) {
    log.error(
      { ...fields, err: settleErr, cause: error },
      'dead-lettering a failed job failed; sending it back',
    );
  }
  try {
    await sendBackToDeadLetter(
      job,
      { attempt: inbound.state.attempt, snoozes: inbound.state.snoozes ?? 0 },
      error,
    );
  } catch (requeueErr) {
    log.error(
      { ...fields, err: requeueErr, cause: error },
      'a failed job could not be dead-lettered nor sent back; it stays in failed',
    );
  }
}
