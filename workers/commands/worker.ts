import { DelayedError, Queue, UnrecoverableError, Worker, type Job } from 'bullmq';
import type { CommandHandler, CommandQueueSettings, ModuleDefinition } from '../../modules/module.ts';
import { createBatcher } from '../../shared/batch.ts';
import { runSupervised } from '../../shared/bus/bullmq-bus.ts';
import { backoffDelayMs } from '../../shared/bus/codec.ts';
import type { Pool } from '../../shared/db/pool.ts';
import type { Logger } from '../../shared/observability/logger.ts';
import { commandQueues, queueOptions } from '../../shared/queue/names.ts';
import { createWorkerRedis } from '../../shared/queue/redis.ts';
import { fatalOrLog, type OnFatal } from '../../shared/runtime/lifecycle.ts';
import {
  endSpan,
  extractContext,
  injectCarrier,
  parseCarrier,
  type TraceCarrier,
} from '../../shared/observability/tracing/trace-context.ts';
import { inBatchSpan, startMessageSpan } from '../../shared/observability/tracing/spans.ts';
import { context } from '@opentelemetry/api';
import { deadLetterCommand } from './dead-letter.ts';

export interface CommandWorkerConfig extends CommandQueueSettings {
  redisUrl: string;
  /** Redis Cluster seed nodes (`REDIS_CLUSTER_NODES`); empty or absent = `redisUrl`. */
  redisClusterNodes?: readonly string[] | undefined;
  queuePrefix: string;
  shutdownGraceMs: number;
  /** Stalls (lock expired: the worker died) a job survives before BullMQ fails it by itself. @defaultValue 5 */
  maxStalledCount?: number;
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
}

export interface CommandWorker {
  readonly worker: Worker;
  close(): Promise<void>;
}

/** What the processor throws once a job is in the dead letters: the `failed` listener leaves it alone. */
class DeadLetteredError extends UnrecoverableError {}

/**
 * A job whose dead-lettering failed in the `failed` listener is sent back to the queue carrying this
 * in its progress (not its data, which the dead letter keeps as it came), so the processor
 * dead-letters it — with the processor's park-and-retry — instead of processing it again.
 */
interface PendingDeadLetter {
  deadLetter: { error: string; stack: string | null; attempts: number };
}

function pendingDeadLetter(job: Job): PendingDeadLetter['deadLetter'] | undefined {
  const progress: unknown = job.progress;
  if (typeof progress !== 'object' || progress === null || !('deadLetter' in progress)) return undefined;
  const pending = (progress as PendingDeadLetter).deadLetter;
  return typeof pending?.error === 'string' && typeof pending.attempts === 'number' ? pending : undefined;
}

/**
 * The core's command worker, one per module queue: parses each job against the module's schema,
 * hands it to the module's handler in micro-batches (one transaction per batch), retries with
 * backoff, and acknowledges only after the effect committed. A job that cannot be parsed, or
 * exhausts its attempts, goes to the dead letters with its payload and error.
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
  const deadLetterDeps = {
    pool: deps.pool,
    dlq,
    origin: queues.commands,
    handler,
    events: module.events,
    onInvalidEvent: (type: string, error: string) =>
      log.error({ type, error }, 'module returned an invalid dead-letter event; not appended'),
    ...(deps.onOutboxAppended ? { onOutboxAppended: deps.onOutboxAppended } : {}),
  };
  const batcher = createBatcher({
    maxSize: config.batchSize,
    maxWaitMs: config.batchWaitMs,
    // One transaction per micro-batch: its span links every job's span (each keeps its own parent).
    run: (commands: Parameters<CommandHandler['handleBatch']>[0]) =>
      inBatchSpan(
        `write ${module.name}`,
        commands,
        (c) => (c.trace ? extractContext(c.trace) : undefined),
        { 'db.system.name': 'postgresql', 'messaging.destination.name': queues.commands },
        () => handler.handleBatch(commands),
      ),
  });

  async function toDeadLetters(
    job: Job,
    error: Error,
    attempts: number,
    token: string | undefined,
  ): Promise<never> {
    try {
      const id = await deadLetterCommand(deadLetterDeps, job, error, attempts);
      log.warn({ jobId: job.id, deadLetterId: id, attempts, err: error }, 'command moved to dead letters');
    } catch (recordErr) {
      // Never drop a job we could not record: park it (no attempt burned) and try again later.
      log.error({ jobId: job.id, err: recordErr }, 'dead-lettering failed; job parked for retry');
      await job.moveToDelayed(
        Date.now() + backoffDelayMs(attempts, config.backoffMs, config.backoffMaxMs),
        token,
      );
      throw new DelayedError();
    }
    throw new DeadLetteredError(error.message);
  }

  /**
   * A downstream the module needs is down (e.g. the payment service): the command is not at fault, so
   * no attempt is burned and nothing is dead-lettered. While its circuit breaker is open the whole
   * queue is rate-limited until it half-opens (jobs stay waiting, every worker of the queue holds
   * off); a failure that has not opened it yet parks just this job in `delayed` for a backoff.
   */
  async function waitForDependency(
    job: Job,
    token: string | undefined,
    error: Error,
    jobLog: Logger,
  ): Promise<never> {
    const retryAfterMs = handler.dependency?.retryAfterMs() ?? 0;
    if (retryAfterMs > 0) {
      jobLog.debug(
        { retryAfterMs, err: error },
        'dependency breaker open; job back to waiting, queue rate-limited',
      );
      await worker.rateLimit(retryAfterMs);
      throw Worker.RateLimitError();
    }
    const delayMs = backoffDelayMs(1, config.backoffMs, config.backoffMaxMs);
    jobLog.warn({ delayMs, err: error }, 'dependency unavailable; job parked without burning an attempt');
    await job.moveToDelayed(Date.now() + delayMs, token);
    throw new DelayedError();
  }

  /**
   * The job's consumer span, a child of the producer span whose context the API put into the job's
   * options (`telemetry.metadata`, BullMQ's own field): the same job — and so the same trace — on
   * every retry, and after a redrive (which re-adds the job with its options).
   */
  async function process(job: Job, token?: string): Promise<unknown> {
    const started = startMessageSpan({
      operation: 'process',
      kind: 'consumer',
      system: 'bullmq',
      destination: queues.commands,
      messageId: job.id,
      parent: parseCarrier(job.opts.telemetry?.metadata),
      attributes: { 'messaging.bullmq.job.attempt': job.attemptsMade + 1 },
    });
    if (!started) return processJob(job, token, undefined);
    try {
      const value = await context.with(started.context, () =>
        processJob(job, token, injectCarrier(started.context)),
      );
      endSpan(started.span);
      return value;
    } catch (err) {
      // Parking a job (delayed, rate-limited) is flow control, not a failure of this attempt.
      const parked = err instanceof DelayedError || (err as Error).name === 'RateLimitError';
      endSpan(started.span, parked ? undefined : err);
      throw err;
    }
  }

  async function processJob(
    job: Job,
    token: string | undefined,
    trace: TraceCarrier | undefined,
  ): Promise<unknown> {
    const pending = pendingDeadLetter(job);
    if (pending) {
      const error = Object.assign(new Error(pending.error), { stack: pending.stack ?? undefined });
      return toDeadLetters(job, error, pending.attempts, token);
    }
    const attempt = job.attemptsMade + 1;
    const parsed = module.jobSchema.safeParse(job.data);
    if (!parsed.success) {
      const detail = parsed.error.issues
        .map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`)
        .join('; ');
      return toDeadLetters(
        job,
        new Error(`invalid command for queue ${queues.commands}: ${detail}`),
        attempt,
        token,
      );
    }
    const cmd = parsed.data;
    const { correlationId, subjectId } = handler.describe(cmd);
    // Bound into each line rather than a per-job child logger: no per-job cost when a level is off.
    // `orderId`: the order the command concerns (the dead letters' `order_id`), so one grep follows an order.
    const ids = { correlationId, jobId: job.id, orderId: subjectId, queue: queues.commands };
    try {
      const prepared = handler.prepare ? await handler.prepare(cmd) : undefined;
      const outcome = await batcher.submit({ job: cmd, attempt, prepared, trace });
      log.info({ ...ids, attempt, status: handler.statusOf(outcome) }, 'command processed');
      return outcome;
    } catch (err) {
      const error = err instanceof Error ? err : new Error(String(err));
      if (handler.dependency?.isUnavailable(error))
        return waitForDependency(job, token, error, log.child(ids));
      if (attempt >= (job.opts.attempts ?? 1)) return toDeadLetters(job, error, attempt, token);
      log.warn({ ...ids, attempt, err: error }, 'command attempt failed; will retry');
      throw error;
    }
  }

  const worker = new Worker(queues.commands, process, {
    ...queueOptions(connection, config.queuePrefix, queues.commands),
    concurrency: config.concurrency,
    autorun: false,
    // A crashed worker's jobs come back after the lock expires; allow several stalls before BullMQ
    // fails a job by itself (which the `failed` listener below then dead-letters).
    maxStalledCount: config.maxStalledCount ?? 5,
    lockDuration: config.lockDurationMs ?? 30_000,
    stalledInterval: config.stalledIntervalMs ?? 30_000,
  });

  /**
   * A job BullMQ failed for good by itself — stalled too often (BullMQ fails it with its own
   * UnrecoverableError, never calling the processor) or out of attempts outside the processor's
   * reach — goes to the dead letters. If that fails it is not left in `failed`, where `removeOnFail`
   * trims it: it goes back to the queue marked, and the processor dead-letters it, parking it with a
   * backoff (no attempt burned) for as long as dead-lettering keeps failing.
   */
  async function deadLetterFailed(job: Job, err: Error): Promise<void> {
    try {
      const id = await deadLetterCommand(deadLetterDeps, job, err, job.attemptsMade);
      log.warn({ jobId: job.id, deadLetterId: id, err }, 'failed command moved to dead letters');
      return;
    } catch (recordErr) {
      log.error(
        { jobId: job.id, err: recordErr },
        'dead-lettering a failed job failed; sent back to retry it',
      );
    }
    try {
      const deadLetter = { error: err.message, stack: err.stack ?? null, attempts: job.attemptsMade };
      await job.updateProgress({ deadLetter } satisfies PendingDeadLetter);
      await job.retry('failed');
    } catch (requeueErr) {
      // Redis refused too: the job stays in `failed`, visible in Bull Board, to be retried by hand.
      log.error({ jobId: job.id, err: requeueErr }, 'could not send a failed job back; it stays in failed');
    }
  }

  worker.on('error', (err) => log.error({ err }, 'command worker error'));
  worker.on('failed', (job, err) => {
    if (!job || err instanceof DeadLetteredError) return; // the processor dead-lettered it already
    const exhausted =
      err.name === 'UnrecoverableError' ||
      /stalled/i.test(err.message) ||
      job.attemptsMade >= (job.opts.attempts ?? 1);
    if (exhausted) void deadLetterFailed(job, err);
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
        await batcher.drain();
        await handler.close?.();
        await dlq.close();
        await connection.quit().catch(() => connection.disconnect());
      })()),
  };
}
