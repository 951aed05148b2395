import type { DispatchOptions, FairQueue, WorkerSlots } from '../../shared/fairness/fair-queue.ts';
import type { Logger } from '../../shared/observability/logger.ts';
import type { Redis } from '../../shared/queue/redis.ts';

/**
 * The worker side of fair execution (shared/fairness): gives the slots of finished jobs back and tops
 * the queue's wait list up, in as few Redis calls as it can.
 */
export interface FairDispatcher {
  /** `jobId` finished for good (completed, or failed for good): its slot is given back by the next call. */
  finished(jobId: string): void;
  /**
   * A job was taken from the wait list: top it up again (coalesced like the rest), so the next jobs
   * are waiting when slots free up — BullMQ then hands them over with the finish of the last, in the
   * same call, instead of the worker going idle until a dispatch wakes it.
   */
  taken(): void;
  /**
   * `count` jobs of this worker committed and are about to complete: promotes as many for them at
   * once (see {@link DispatchOptions.finishing}), so that each completion takes the next job in the
   * same call. Resolves when done, failed (logged at debug) or after `waitMs` — never rejects.
   */
  finishing(count: number, waitMs?: number): Promise<void>;
  /**
   * Stops the timer, waits (at most `waitMs`) for a call in flight, then gives back, in one last call,
   * the slots of jobs that finished since. Call it before the connection quits.
   */
  close(waitMs: number): Promise<void>;
}

export interface FairDispatchSettings {
  /** The queue's fair depth: a call that promoted this many found the wait list empty, and may have left work. */
  depth: number;
  /** The periodic call (with the sweep): frees slots of workers that died, catches late adds. */
  intervalMs: number;
  /**
   * This worker's slots, registered with every call (the share cap, {@link WorkerSlots}); the last call
   * of {@link FairDispatcher.close} takes them away. Absent: not registered.
   */
  worker?: WorkerSlots;
}

/**
 * Drives {@link FairQueue.dispatch} for one worker process:
 * - coalesced: the jobs finished within one event-loop turn share one call, and at most one call is in
 *   flight (those finished meanwhile wait for the next) — so a busy worker makes about one call per
 *   turn of completions, not one per job;
 * - a call that promoted a full `depth` with tenants still waiting is followed by another at once
 *   (the wait list was empty: the workers outran it);
 * - every `intervalMs` a call with `sweep: true`: slots leaked by a worker killed between finishing a
 *   job and giving its slot back, held jobs whose add arrived after their turn, and a promotion a
 *   failed call owed.
 * A failed call (Redis down) is logged once per outage, never fatal: its ids are kept for the next
 * call, which the timer makes.
 */
export function createFairDispatcher(
  deps: { fair: FairQueue; client: Redis; logger: Logger },
  settings: FairDispatchSettings,
): FairDispatcher {
  const { fair, client, logger } = deps;
  const done = new Set<string>();
  let due = false;
  let sweepDue = false;
  let closed = false;
  let failing = false;
  let running: Promise<void> | undefined;

  /** One dispatch call with what is owed; true when another should follow at once. */
  async function call(leaving = false): Promise<boolean> {
    const ids = [...done];
    done.clear();
    const sweep = sweepDue;
    sweepDue = false;
    const worker = settings.worker && (leaving ? { ...settings.worker, slots: 0 } : settings.worker);
    const options =
      sweep || worker ? { ...(sweep ? { sweep } : {}), ...(worker ? { worker } : {}) } : undefined;
    try {
      const { promoted, waitingTenants } = await fair.dispatch(client, ids, options);
      if (failing) {
        failing = false;
        logger.info({ queue: fair.queue }, 'fair dispatch works again');
      }
      return promoted >= settings.depth && waitingTenants > 0;
    } catch (err) {
      // Kept for the next call: a slot is given back once, whenever Redis answers again.
      for (const id of ids) done.add(id);
      if (sweep) sweepDue = true;
      if (!failing) {
        failing = true;
        logger.error({ err, queue: fair.queue }, 'fair dispatch failed; retried at the next tick');
      }
      return false;
    }
  }

  function request(): void {
    due = true;
    if (running || closed) return;
    running = (async () => {
      while (due && !closed) {
        // The rest of this turn's completions join the call.
        await new Promise<void>((resolve) => setImmediate(resolve));
        if (closed) break;
        due = false;
        if (await call()) due = true;
      }
    })().finally(() => (running = undefined));
  }

  const timer = setInterval(() => {
    sweepDue = true;
    request();
  }, settings.intervalMs);
  timer.unref();
  // A worker that starts tops the queue up at once (e.g. after the last one stopped with jobs held).
  sweepDue = true;
  request();

  return {
    finished(jobId) {
      done.add(jobId);
      request();
    },
    taken() {
      request();
    },
    async finishing(count, waitMs = 250) {
      if (closed || count <= 0 || !settings.worker) return;
      const options: DispatchOptions = { worker: settings.worker, finishing: count };
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([
        fair
          .dispatch(client, [], options)
          .catch((err: unknown) => logger.debug({ err, queue: fair.queue }, 'fair prefetch failed')),
        new Promise<void>((resolve) => (timer = setTimeout(resolve, waitMs))),
      ]).finally(() => clearTimeout(timer));
    },
    async close(waitMs) {
      closed = true;
      clearInterval(timer);
      let deadline: NodeJS.Timeout | undefined;
      const late = new Promise<'late'>((resolve) => (deadline = setTimeout(() => resolve('late'), waitMs)));
      try {
        if (running && (await Promise.race([running, late])) === 'late') return;
        // What finished during the shutdown gives its slots back, and this worker's slots leave the
        // share cap (this may also top the list up for the next worker: harmless, those jobs wait in
        // BullMQ's wait list as any other).
        if (done.size > 0 || settings.worker) await Promise.race([call(true), late]);
      } finally {
        clearTimeout(deadline);
      }
    },
  };
}
