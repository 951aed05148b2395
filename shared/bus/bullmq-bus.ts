import { Queue, UnrecoverableError, Worker, type Job } from 'bullmq';
import type { DeadLetterRecord, DeadLetterSink } from '../dead-letters/dead-letter.ts';
import { PoisonMessageError } from '../errors/domain.ts';
import type { Logger } from '../observability/logger.ts';
import type { Metrics } from '../observability/metrics.ts';
import { QueueNames } from '../queue/names.ts';
import { createWorkerRedis } from '../queue/redis.ts';
import { decodeEvent, encodeEvent, EventHeaders } from './codec.ts';
import type { EventBus, EventHandler, Subscription } from './event-bus.ts';

/** What travels in a BullMQ event job: the same bytes and headers as on Kafka or RabbitMQ. */
export interface BullmqEventJob {
  body: string;
  headers: Record<string, string>;
}

export interface BullmqBusConfig {
  redisUrl: string;
  queuePrefix: string;
  concurrency: number;
  maxAttempts: number;
  backoffMs: number;
  shutdownGraceMs: number;
  /** BullMQ job lock of an event being projected. @defaultValue 30_000 */
  lockDurationMs?: number;
  /** How often stalled event jobs are looked for. @defaultValue 30_000 */
  stalledIntervalMs?: number;
}

export interface BullmqBusDeps {
  logger: Logger;
  deadLetters: DeadLetterSink;
  /** Counts and times the consumers' jobs on queue `events`. */
  metrics?: Pick<Metrics, 'instrumentWorker'> | undefined;
}

/**
 * The embedded event bus: one BullMQ job per event on queue `events` (job id = event id, so a
 * re-published event is not queued twice while the first is pending). Retries use BullMQ's exponential
 * backoff; exhausted or poison events go to `events-dead-letters` and the dead-letter table.
 * Ordering: none across concurrent jobs — the projector is order-insensitive by design.
 */
export function createBullmqBus(deps: BullmqBusDeps, config: BullmqBusConfig): EventBus {
  const log = deps.logger.child({ component: 'bullmq-bus' });
  const connection = createWorkerRedis({ url: config.redisUrl, commandTimeoutMs: 0 }, 'conveyor-bus');
  const queue = new Queue<BullmqEventJob>(QueueNames.events, { connection, prefix: config.queuePrefix });
  const dlq = new Queue(QueueNames.eventsDeadLetters, { connection, prefix: config.queuePrefix });
  const jobOptions = {
    attempts: config.maxAttempts,
    backoff: { type: 'exponential', delay: config.backoffMs, jitter: 0.5 },
    removeOnComplete: { age: 600, count: 10_000 },
    removeOnFail: { count: 1_000 },
  };
  const workers: Worker[] = [];

  async function deadLetter(job: Job<BullmqEventJob>, error: Error, attempts: number): Promise<void> {
    const headers = job.data?.headers ?? {};
    const id = `bullmq-${QueueNames.events}-${job.id}`;
    await deps.deadLetters.record({
      id,
      transport: 'bullmq',
      origin: QueueNames.events,
      kind: 'event',
      messageKey: headers[EventHeaders.eventId] ?? job.id ?? null,
      payload: Buffer.from(
        typeof job.data?.body === 'string' ? job.data.body : JSON.stringify(job.data ?? null),
      ),
      headers,
      error: error.message,
      stack: error.stack ?? null,
      attempts,
      correlationId: headers[EventHeaders.correlationId] ?? null,
      orderId: null,
      firstFailedAt: new Date(job.processedOn ?? job.timestamp),
    });
    await dlq.add(
      'dead-letter',
      { deadLetterId: id, ...job.data, error: error.message, attempts },
      { jobId: id },
    );
    log.warn(
      { deadLetterId: id, correlationId: headers[EventHeaders.correlationId], attempts, err: error },
      'event dead-lettered',
    );
  }

  return {
    kind: 'bullmq',
    async start() {
      await queue.waitUntilReady();
    },
    async publish(events) {
      if (events.length === 0) return;
      await queue.addBulk(
        events.map((e) => {
          const { body, headers } = encodeEvent(e);
          return {
            name: e.type,
            data: { body: body.toString('utf8'), headers },
            opts: { ...jobOptions, jobId: e.eventId },
          };
        }),
      );
    },
    async subscribe(_group: string, handler: EventHandler): Promise<Subscription> {
      const worker = new Worker<BullmqEventJob>(
        QueueNames.events,
        async (job) => {
          const attempt = job.attemptsMade + 1;
          try {
            const event = decodeEvent(job.data?.body);
            await handler(event, { attempt, transport: 'bullmq' });
          } catch (err) {
            const error = err instanceof Error ? err : new Error(String(err));
            const final = err instanceof PoisonMessageError || attempt >= (job.opts.attempts ?? 1);
            if (!final) throw error;
            await deadLetter(job, error, attempt);
            throw new UnrecoverableError(error.message);
          }
        },
        {
          connection,
          prefix: config.queuePrefix,
          concurrency: config.concurrency,
          maxStalledCount: 5,
          // A crashed consumer's jobs come back once their lock expires.
          ...(config.lockDurationMs ? { lockDuration: config.lockDurationMs } : {}),
          ...(config.stalledIntervalMs ? { stalledInterval: config.stalledIntervalMs } : {}),
        },
      );
      worker.on('error', (err) => log.error({ err }, 'event worker error'));
      deps.metrics?.instrumentWorker(worker, QueueNames.events);
      workers.push(worker);
      return {
        close: async () => {
          await worker.close();
        },
      };
    },
    async redrive(dl: DeadLetterRecord) {
      await queue.add(
        dl.headers[EventHeaders.eventType] ?? 'redriven',
        { body: dl.payload.toString('utf8'), headers: dl.headers },
        jobOptions,
      );
      await dlq.remove(dl.id).catch(() => undefined);
    },
    async close() {
      await Promise.allSettled(workers.map((w) => w.close()));
      await queue.close();
      await dlq.close();
      await connection.quit().catch(() => connection.disconnect());
    },
  };
}
