import { randomUUID } from 'node:crypto';
import { Queue, Worker, type Job } from 'bullmq';
import type { CommandHandler, CommandQueueSettings, ModuleDefinition } from '../../shared/modules/module.ts';
import { createBatcher } from '../../shared/batch.ts';
import { runSupervised } from '../../shared/bus/bullmq/bus.ts';
import type { Pool } from '../../shared/db/pool.ts';
import { createPgDeadLetterSink } from '../../shared/dead-letters/dead-letter.ts';
import {
  createDeliveryCore,
  type DeliveryCore,
  type DeliveryCoreDeps,
  type Inbound,
  type TransportActions,
} from '../../shared/delivery/core.ts';
import { PoisonMessageError, SnoozeDelivery } from '../../shared/delivery/outcome.ts';
import type { Verdict } from '../../shared/delivery/policy.ts';
import { createFairQueue } from '../../shared/fairness/fair-queue.ts';
import type { Logger } from '../../shared/observability/logger.ts';
import {
  activeJobActions,
  deadLetterFailedJob,
  deliveryStateOf,
  failedForGood,
  jobResult,
  pendingDeadLetterOf,
} from '../../shared/queue/job-delivery.ts';
import { commandQueues, queueOptions } from '../../shared/queue/names.ts';
import { KEEP_COMPLETED_MAX, trimCompleted } from '../../shared/queue/command-queue.ts';
import { createWorkerRedis } from '../../shared/queue/redis.ts';
import { asError, fatalOrLog, type OnFatal } from '../../shared/runtime/lifecycle.ts';
import {
  endSpan,
  extractContext,
  injectCarrier,
  parseCarrier,
  tracingActive,
  type TraceCarrier,
} from '../../shared/observability/tracing/trace-context.ts';
import { inBatchSpan, startMessageSpan } from '../../shared/observability/tracing/spans.ts';
import { context } from '@opentelemetry/api';
import {
  commandDeadLetter,
  copyCommandDeadLetter,
  recordCommandDeadLetter,
  type CommandDeadLetterDeps,
} from './dead-letter.ts';
import { createFairDispatcher, type FairDispatcher } from './fair-dispatch.ts';
import { createOutcomePublisher, type OutcomeStep } from '../../shared/results/wire.ts';

export interface CommandWorkerConfig extends CommandQueueSettings {
  redisUrl: string;
  /** Redis Cluster seed nodes (`REDIS_CLUSTER_NODES`); empty or absent = `redisUrl`. */
  redisClusterNodes?: readonly string[] | undefined;
  queuePrefix: string;
  shutdownGraceMs: number;
  /** Stalls (lock expired: the worker died) a job survives before BullMQ fails it by itself. @defaultValue 5 */
  maxStalledCount?: number;
  /**
   * First delay of a snooze that names none (PostgreSQL down, a dependency failing before its breaker
   * opens, a dead letter that could not be recorded); doubles per snooze. Costs no attempt.
   * @defaultValue `backoffMs`
   */
  snoozeMs?: number;
  /** Longest such delay. @defaultValue the smaller of `backoffMaxMs` and 30 s */
  snoozeMaxMs?: number;
  /**
   * Fair execution between tenants (shared/fairness, `config.fairness`): this worker gives finished
   * jobs' in-flight slots back and tops the wait list up to `depth`, in turn over the tenants, as jobs
   * finish and every `dispatchIntervalMs`. Absent: off (the queue is FIFO, as BullMQ's).
   * `leftoversOnly` (FAIRNESS=false): the API holds nothing, so only the periodic call runs — it lets
   * in what was held before fairness was turned off, at `depth` per call and at once when it fills.
   */
  fairness?:
    | {
        depth: number;
        holdMs: number;
        dispatchIntervalMs: number;
        leftoversOnly?: boolean;
        /**
         * Slots this worker keeps, on top of `concurrency`, for commands of tenants without a backlog:
         * tenants with one share at most the workers' `concurrency` (wait list and active together),
         * so a quiet tenant's order is taken at once, not when a flood's micro-batch ends.
         * Costs throughput: the flood's next jobs can no longer wait in the wait list (they would take
         * the free slots), so BullMQ takes them one call each as slots free up instead of with the
         * completion of the last. 0 = none (no share cap; the wait list `depth` ahead).
         * @defaultValue 0
         */
        reserve?: number | undefined;
      }
    | undefined;
}

export interface CommandWorkerDeps {
  pool: Pool;
  logger: Logger;
  /** The module whose queue this worker consumes. */
  module: Pick<ModuleDefinition, 'name' | 'jobSchema' | 'events'>;
  /** The module's decisions and writes; closed by the worker after it stopped. */
  handler: CommandHandler;
  /** Called after a dead letter's events were committed to the outbox: wakes the relays. */
  onOutboxAppended?: () => void;
  /** Told when the worker can no longer take jobs (its BullMQ loop ended). Absent: logged only. */
  onFatal?: OnFatal;
  /** Told each delivery verdict carried out (metrics: retries, snoozes, dead letters, parks). */
  onVerdict?: DeliveryCoreDeps['onVerdict'];
}

export interface CommandWorker {
  readonly worker: Worker;
  close(): Promise<void>;
}

/** How often a command worker trims its queue's completed jobs to {@link KEEP_COMPLETED_MAX}. */
const TRIM_COMPLETED_INTERVAL_MS = 5_000;

/** The tenant a job's data names (`tenant`, set by the API; absent from older and foreign jobs). */
function tenantOf(job: Job): string | undefined {
  const data: unknown = job.data;
  if (typeof data !== 'object' || data === null) return undefined;
  const tenant = (data as { tenant?: unknown }).tenant;
  return typeof tenant === 'string' ? tenant : undefined;
}

/** A job's log fields: its id and queue, and its tenant when it names one. */
function jobFields(job: Job, queue: string): Record<string, unknown> {
  const tenant = tenantOf(job);
  return tenant === undefined ? { jobId: job.id, queue } : { jobId: job.id, queue, tenant };
}

/** How a processed job leaves the processor, once the core's verdict is carried out. */
interface Handled {
  verdict: Verdict;
  /** The handler's value (an acknowledged job) and the dead letter's id (a dead-lettered one). */
  done: { value?: unknown; deadLetterId?: string | undefined };
  /** A snooze left the job waiting behind a queue-wide hold instead of moving it to `delayed`. */
  rateLimited: boolean;
}

/**
 * The core's command worker, one per module queue: parses each job against the module's schema and
 * hands it to the module's handler in micro-batches (one transaction per batch), acknowledging only
 * after the effect committed. Every decision about a failure — retry and its backoff, snooze (an
 * outage, a dependency down: no attempt consumed), the last attempt, the dead letter, its record and
 * what happens when that fails — is the delivery core's (shared/delivery); this file only offers it
 * BullMQ's primitives, the same as the BullMQ event bus's (shared/queue/job-delivery.ts): a hand-back
 * moves the job to `delayed` with its counts in its progress, in one script; a finished job (done,
 * cancelled or dead-lettered) COMPLETES. Nothing is left in `failed`.
 */
export function createCommandWorker(deps: CommandWorkerDeps, config: CommandWorkerConfig): CommandWorker {
  const { handler, module } = deps;
  const queues = commandQueues(module.name);
  const component = `${module.name}-worker`;
  const log = deps.logger.child({ component });
  const onFatal = fatalOrLog(deps.onFatal, log);
  let closing: Promise<void> | undefined;
  const connection = createWorkerRedis(
    { url: config.redisUrl, commandTimeoutMs: 0, clusterNodes: config.redisClusterNodes },
    `conveyor-${component}`,
  );
  const dlq = new Queue(queues.deadLetters, queueOptions(connection, config.queuePrefix, queues.deadLetters));
  const deadLetterDeps: CommandDeadLetterDeps = {
    pool: deps.pool,
    origin: queues.commands,
    handler,
    events: module.events,
    onInvalidEvent: (type: string, error: string) =>
      log.error({ type, error }, 'module returned an invalid dead-letter event; not appended'),
    ...(deps.onOutboxAppended ? { onOutboxAppended: deps.onOutboxAppended } : {}),
  };
  const sink = createPgDeadLetterSink(deps.pool);
  // The results hub's steps (api/results): one PUBLISH per micro-batch (what settles in one turn),
  // after what it tells committed; API replicas re-read the command's state when told.
  const outcomes = createOutcomePublisher(connection, config.queuePrefix, (err) =>
    log.debug({ err }, 'results step not published'),
  );
  const step = (s: OutcomeStep) => outcomes.publish(module.name, s);
  // One transaction per micro-batch: its span links every job's span (each keeps its own parent).
  const runBatch = (commands: Parameters<CommandHandler['handleBatch']>[0]) =>
    inBatchSpan(
      `write ${module.name}`,
      commands,
      (c) => (c.trace ? extractContext(c.trace) : undefined),
      { 'db.system.name': 'postgresql', 'messaging.destination.name': queues.commands },
      () => handler.handleBatch(commands),
    );
  // Set once the fair dispatcher exists (it needs the worker's keys): see `finishing` there.
  let beforeCompleting: ((count: number) => Promise<void>) | undefined;
  const batcher = createBatcher({
    maxSize: config.batchSize,
    maxWaitMs: config.batchWaitMs,
    run: async (commands: Parameters<CommandHandler['handleBatch']>[0]) => {
      const outcomes = await runBatch(commands);
      // Committed: the jobs that will complete make room for as many under the share cap, promoted
      // now so that each completion takes the next in the same call (not fetched one by one after).
      if (beforeCompleting) await beforeCompleting(outcomes.filter((o) => o.ok).length);
      return outcomes;
    },
  });
  // The few commands of a tenant while another fills this worker (a flood's): a transaction of their
  // own, at once — not a place in the flood's next micro-batch, waiting for it to fill and to commit.
  const express = createBatcher({ maxSize: config.batchSize, maxWaitMs: 0, run: runBatch });
  const expressMax = Math.max(1, Math.floor(config.batchSize / 10));
  /** Jobs in this worker's processor per tenant ('' = none named), and all of them. */
  const inProcess = new Map<string, number>();
  let inProcessTotal = 0;
  /** Whether a job of `tenant` (counted in {@link inProcess}) goes in the express batch. */
  const expressFor = (tenant: string): boolean => {
    const mine = inProcess.get(tenant) ?? 0;
    return mine <= expressMax && inProcessTotal - mine > config.batchSize / 2;
  };

  // One core per attempt budget: a job's own `attempts` option (set by its producer) wins over config.
  const cores = new Map<number, DeliveryCore>();
  function coreFor(job: Job): DeliveryCore {
    const maxAttempts = Math.max(1, job.opts.attempts ?? config.attempts);
    let core = cores.get(maxAttempts);
    if (!core) {
      core = createDeliveryCore(
        { sink, logger: deps.logger, ...(deps.onVerdict ? { onVerdict: deps.onVerdict } : {}) },
        {
          maxAttempts,
          backoffMs: config.backoffMs,
          backoffMaxMs: config.backoffMaxMs,
          snoozeMs: config.snoozeMs ?? config.backoffMs,
          snoozeMaxMs: config.snoozeMaxMs ?? Math.min(config.backoffMaxMs, 30_000),
        },
        queues.commands,
      );
      cores.set(maxAttempts, core);
    }
    return core;
  }

  /** The job as the core sees it; `built.deadLetterId` is filled in when it becomes a dead letter. */
  function inbound(
    job: Job,
    actions: TransportActions,
    fields: Record<string, unknown> = jobFields(job, queues.commands),
    built: { deadLetterId?: string | undefined } = {},
  ): Inbound {
    return {
      state: deliveryStateOf(job),
      // Written out: a spread plus a field costs a fresh hidden class per job on V8.
      actions: {
        ack: actions.ack,
        handBack: actions.handBack,
        copyToDeadLetters: (record) => copyCommandDeadLetter(dlq, job, record),
      },
      deadLetter: (error, attempts) => {
        const record = commandDeadLetter(deadLetterDeps, job, error, attempts);
        built.deadLetterId = record.id;
        return record;
      },
      recordWith: (record) => recordCommandDeadLetter(deadLetterDeps, job.data, record),
      log: fields,
    };
  }

  /** Whether `error` says the module's dependency (e.g. the payment service) is down, not the command wrong. */
  function dependencyDown(error: Error): boolean {
    const dependency = handler.dependency;
    if (!dependency) return false;
    if (dependency.isUnavailable(error)) return true;
    return (
      error instanceof SnoozeDelivery && error.cause instanceof Error && dependency.isUnavailable(error.cause)
    );
  }

  async function handle(
    job: Job,
    token: string | undefined,
    trace: TraceCarrier | undefined,
  ): Promise<Handled> {
    const delayed = activeJobActions(job, token);
    let rateLimited = false;
    // While the dependency's breaker is open: how long the whole queue holds off.
    let holdQueueMs = 0;
    const done: Handled['done'] = {};
    const fields = jobFields(job, queues.commands);
    const message = inbound(
      job,
      {
        ack: delayed.ack,
        async handBack(delayMs, next, why, error) {
          if (why === 'snooze' && holdQueueMs > 0) {
            // Every worker of the queue holds off until the breaker half-opens; this job waits in
            // line as it is (back to waiting, nothing counted): a hold of the queue, not its snooze.
            await worker.rateLimit(holdQueueMs);
            rateLimited = true;
            return;
          }
          await delayed.handBack(delayMs, next, why, error);
        },
      },
      fields,
      done,
    );
    const core = coreFor(job);
    const { attempt } = message.state;

    let verdict: Verdict;
    const pending = pendingDeadLetterOf(job);
    if (!pending && job.id) step({ id: job.id, step: 'started', attempt });
    if (pending) {
      // BullMQ failed it by itself and its dead letter could not be recorded then: record it now.
      verdict = await core.settle(message, { kind: 'poison', error: pending });
    } else {
      verdict = await core.deliver(message, async () => {
        const parsed = module.jobSchema.safeParse(job.data);
        if (!parsed.success) {
          const detail = parsed.error.issues
            .map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`)
            .join('; ');
          throw new PoisonMessageError(`invalid command for queue ${queues.commands}: ${detail}`);
        }
        const cmd = parsed.data;
        const { correlationId, subjectId } = handler.describe(cmd);
        // `orderId`: the subject the command concerns (the dead letters' `subject_id`), so one grep follows it.
        Object.assign(fields, { correlationId, orderId: subjectId });
        try {
          const prepared = handler.prepare ? await handler.prepare(cmd) : undefined;
          const lane = expressFor(tenantOf(job) ?? '') ? express : batcher;
          done.value = await lane.submit({ job: cmd, attempt, prepared, trace });
        } catch (err) {
          const error = asError(err);
          if (!dependencyDown(error)) throw err;
          // The command is not at fault: a snooze. While the breaker is open, until it half-opens.
          const retryAfterMs = handler.dependency?.retryAfterMs() ?? 0;
          holdQueueMs = retryAfterMs;
          if (error instanceof SnoozeDelivery) throw error;
          throw new SnoozeDelivery(
            `dependency unavailable: ${error.message}`,
            retryAfterMs > 0 ? retryAfterMs : undefined,
            {
              cause: error,
            },
          );
        }
        // The line's object only when it is written (pino drops it below `info` after it was built).
        if (log.isLevelEnabled('info'))
          log.info({ ...fields, attempt, status: handler.statusOf(done.value) }, 'command processed');
      });
    }
    return { verdict, done, rateLimited };
  }

  /**
   * Tells the results hub what a carried-out verdict means for the command: decided (done, cancelled
   * or dead-lettered: all committed by now) or retried with its error; a snooze (no attempt used) says
   * nothing — the command is waiting as before.
   */
  function publishVerdict(id: string, verdict: Verdict, value: unknown): void {
    switch (verdict.action) {
      case 'ack': {
        let status = 'cancelled';
        if (!verdict.cancelled) {
          try {
            status = handler.statusOf(value);
          } catch {
            status = 'completed';
          }
        }
        return step({ id, step: 'decided', status });
      }
      case 'dead-letter':
        return step({ id, step: 'decided', status: 'dead_lettered' });
      case 'retry':
        return step({ id, step: 'retried', attempt: verdict.nextAttempt - 1, error: verdict.error.message });
      case 'snooze':
        return;
    }
  }

  /**
   * The job's consumer span, a child of the producer span whose context the API put into the job's
   * options (`telemetry.metadata`, BullMQ's own field): the same job — and so the same trace — on
   * every retry, and after a redrive (which re-adds the job with its options). It names the job's
   * tenant (`conveyor.tenant`) when the job does.
   */
  async function process(job: Job, token?: string): Promise<unknown> {
    const tenant = tenantOf(job) ?? '';
    inProcess.set(tenant, (inProcess.get(tenant) ?? 0) + 1);
    inProcessTotal++;
    try {
      return await processCounted(job, token);
    } finally {
      inProcessTotal--;
      const left = (inProcess.get(tenant) ?? 1) - 1;
      if (left > 0) inProcess.set(tenant, left);
      else inProcess.delete(tenant);
    }
  }

  async function processCounted(job: Job, token?: string): Promise<unknown> {
    // Tracing off: not even the span's arguments are computed (the job's state is parsed from its progress).
    let started: ReturnType<typeof startMessageSpan>;
    if (tracingActive()) {
      const tenant = tenantOf(job);
      started = startMessageSpan({
        operation: 'process',
        kind: 'consumer',
        system: 'bullmq',
        destination: queues.commands,
        messageId: job.id,
        parent: parseCarrier(job.opts.telemetry?.metadata),
        attributes: {
          'messaging.bullmq.job.attempt': deliveryStateOf(job).attempt,
          ...(tenant !== undefined ? { 'conveyor.tenant': tenant } : {}),
        },
      });
    }
    let handled: Handled;
    try {
      handled = started
        ? await context.with(started.context, () => handle(job, token, injectCarrier(started.context)))
        : await handle(job, token, undefined);
    } catch (err) {
      // The core could not hand the job back (Redis): BullMQ's own redelivery takes over.
      if (started) endSpan(started.span, err);
      throw err;
    }
    const { verdict, done, rateLimited } = handled;
    if (job.id) publishVerdict(job.id, verdict, done.value);
    if (started) {
      // A snooze or park is flow control; a retry or dead letter is this attempt failing.
      const failed = verdict.action === 'retry' || verdict.action === 'dead-letter';
      endSpan(started.span, failed ? verdict.error : undefined);
    }
    if (rateLimited) throw Worker.RateLimitError();
    return jobResult(verdict, done);
  }

  const fairness = config.fairness;
  // The share cap's slots: only where the API holds backlogs (FAIRNESS=false: FIFO, none kept).
  const reserve = fairness && !fairness.leftoversOnly ? Math.max(0, Math.floor(fairness.reserve ?? 0)) : 0;
  const worker = new Worker(queues.commands, process, {
    ...queueOptions(connection, config.queuePrefix, queues.commands),
    concurrency: config.concurrency + reserve,
    autorun: false,
    // A crashed worker's jobs come back after the lock expires; allow several stalls before BullMQ
    // fails a job by itself (which the `failed` listener below then dead-letters).
    maxStalledCount: config.maxStalledCount ?? 5,
    lockDuration: config.lockDurationMs ?? 30_000,
    stalledInterval: config.stalledIntervalMs ?? 30_000,
  });

  // Fair execution: every job that finished for good gives its tenant's in-flight slot back, and its
  // place in the wait list to the next tenant's turn (shared/fairness, workers/commands/fair-dispatch.ts).
  const dispatcher: FairDispatcher | undefined = fairness
    ? createFairDispatcher(
        {
          // The queue's own key prefix (`<bullmq prefix>:<queue>:`, under its hash tag on a cluster),
          // the one the API admits jobs under.
          fair: createFairQueue(queues.commands, worker.toKey(''), {
            depth: fairness.depth,
            holdMs: fairness.holdMs,
          }),
          client: connection,
          logger: log,
        },
        {
          depth: fairness.depth,
          intervalMs: fairness.dispatchIntervalMs,
          ...(reserve > 0
            ? {
                worker: {
                  id: randomUUID(),
                  slots: config.concurrency + reserve,
                  reserve,
                  // Refreshed by every call (the periodic one at least). A killed worker's slots
                  // stay in the cap until its jobs, still active, are back (stalled: its locks
                  // expired and were found): they take its share, not the live workers'.
                  ttlMs: Math.max(
                    10_000,
                    20 * fairness.dispatchIntervalMs,
                    (config.lockDurationMs ?? 30_000) + 2 * (config.stalledIntervalMs ?? 30_000),
                  ),
                },
              }
            : {}),
        },
      )
    : undefined;
  const releasing = dispatcher && !fairness?.leftoversOnly ? dispatcher : undefined;
  if (releasing && reserve > 0) beforeCompleting = (count) => releasing.finishing(count);
  if (releasing) {
    // Done, cancelled and dead-lettered jobs all complete; a hand-back (retry, snooze) keeps its slot.
    worker.on('completed', (job) => {
      if (job.id) releasing.finished(job.id);
    });
    // Refill as jobs are taken, not only as they finish: the wait list stays ahead of the workers.
    worker.on('active', () => releasing.taken());
  }

  // The completed jobs' count cap (commandJobOptions keeps only the age in the job's options): every
  // few seconds, not in each completion's script. One ZCARD a tick while under it.
  const commandsQueue = new Queue(
    queues.commands,
    queueOptions(connection, config.queuePrefix, queues.commands),
  );
  let trimming: Promise<unknown> | undefined;
  const trimTimer = setInterval(() => {
    trimming ??= trimCompleted(commandsQueue, KEEP_COMPLETED_MAX)
      .catch((err: unknown) => log.debug({ err }, 'completed jobs not trimmed'))
      .finally(() => (trimming = undefined));
  }, TRIM_COMPLETED_INTERVAL_MS);
  trimTimer.unref();

  const settling = new Set<Promise<void>>();
  worker.on('error', (err) => log.error({ err }, 'command worker error'));
  // A stall storm (event loop starved past the job locks) shows in the log, not only in the stall count.
  worker.on('stalled', (jobId) =>
    log.warn({ jobId, queue: queues.commands }, 'job stalled: its lock expired while active; taken back'),
  );
  const failedLog = log.child({ queue: queues.commands });
  worker.on('failed', (job, err) => {
    // What BullMQ failed for good by itself (stalled too often, or its own attempts used up after
    // hand-backs Redis refused) is dead-lettered through the core, never left in `failed`.
    if (!failedForGood(job, err)) return;
    const done = deadLetterFailedJob(coreFor(job), job, err, (actions) => inbound(job, actions), failedLog)
      .then(() => {
        // Dead-lettered and removed: its slot is free. Sent back to be dead-lettered by the processor
        // (marked in its progress), it is still in flight: its completion gives the slot back.
        if (releasing && job.id && !pendingDeadLetterOf(job)) releasing.finished(job.id);
        if (job.id && !pendingDeadLetterOf(job))
          step({ id: job.id, step: 'decided', status: 'dead_lettered' });
      })
      .finally(() => settling.delete(done));
    settling.add(done);
  });
  runSupervised(component, worker, connection, onFatal, () => closing !== undefined);

  return {
    worker,
    close: () =>
      (closing ??= (async () => {
        const graceful = worker.close();
        let timer: NodeJS.Timeout | undefined;
        const deadline = new Promise<'timeout'>(
          (r) => (timer = setTimeout(() => r('timeout'), config.shutdownGraceMs)),
        );
        if ((await Promise.race([graceful.then(() => 'done' as const), deadline])) === 'timeout') {
          log.warn({ graceMs: config.shutdownGraceMs }, 'grace period over; forcing worker close');
          await worker.close(true);
        }
        clearTimeout(timer);
        await Promise.all([batcher.drain(), express.drain()]);
        await Promise.allSettled([...settling]);
        await handler.close?.();
        // The slots of jobs that finished during the shutdown go back before the connection quits.
        await dispatcher?.close(Math.min(config.shutdownGraceMs, 2_000));
        clearInterval(trimTimer);
        await trimming;
        await commandsQueue.close();
        await dlq.close();
        await outcomes.flush();
        await connection.quit().catch(() => connection.disconnect());
      })()),
  };
}
