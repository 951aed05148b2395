import { createHash } from 'node:crypto';
import { Job, Queue, UnrecoverableError, Worker, type JobsOptions, type RedisClient } from 'bullmq';
import type { DeadLetterRecord, DeadLetterSink } from '../dead-letters/dead-letter.ts';
import { PoisonMessageError } from '../errors/domain.ts';
import type { Logger } from '../observability/logger.ts';
import type { Metrics } from '../observability/metrics.ts';
import { bullmqPrefix, queueOptions, QueueNames } from '../queue/names.ts';
import { createWorkerRedis, type Redis } from '../queue/redis.ts';
import { fatalOrLog, superviseLoop, type OnFatal } from '../runtime/lifecycle.ts';
import { backoffDelayMs, decodeEvent, encodeEvent, EventHeaders } from './codec.ts';
import { carrierFromHeaders } from '../observability/tracing/trace-context.ts';
import {
  assertGroupName,
  isGroupName,
  type EventBus,
  type EventHandler,
  type Subscription,
} from './event-bus.ts';

/** What travels in a BullMQ event job: the same bytes and headers as on Kafka or RabbitMQ. */
export interface BullmqEventJob {
  body: string;
  headers: Record<string, string>;
  /** Deliveries this event already had inside a batch job before it was split out (counts as attempts). */
  priorAttempts?: number;
}

/** Several events in one BullMQ job: the relay publishes a batch for the Redis cost of one job. */
export interface BullmqEventBatchJob {
  events: BullmqEventJob[];
}

/** One job a publish adds to each group's queue. */
interface NewJob {
  name: string;
  data: BullmqEventJob | BullmqEventBatchJob;
  opts: JobsOptions & { jobId: string };
}

/** Job name of a batch job; every other name is one event (its type). */
export const EVENT_BATCH_JOB = 'event-batch';

/**
 * A dead letter holding a whole batch job (e.g. read by a consumer that predates batches during a
 * rolling deploy) is redriven as a batch again; anything else is one event.
 */
function asBatch(body: string): BullmqEventBatchJob | undefined {
  if (!body.startsWith('{"events":[')) return undefined;
  try {
    const parsed = JSON.parse(body) as { events?: unknown };
    return Array.isArray(parsed.events) ? { events: parsed.events as BullmqEventJob[] } : undefined;
  } catch {
    return undefined;
  }
}

/** The group whose queue is `events` (the projector, `PROJECTOR_CONSUMER`). */
export const BULLMQ_DEFAULT_GROUP = 'projections';

/**
 * The queue of a subscription group: `events` for the default group — the name metrics, Bull Board,
 * the scaling endpoint and KEDA know — and `events.<group>` for any other.
 */
export function bullmqGroupQueue(group: string, defaultGroup: string = BULLMQ_DEFAULT_GROUP): string {
  return group === defaultGroup ? QueueNames.events : `${QueueNames.events}.${group}`;
}

/** Whether `name` is an event queue of some group (`events` or `events.<group>`): a redrive target. */
export function isBullmqEventQueue(name: string): boolean {
  return name === QueueNames.events || name.startsWith(`${QueueNames.events}.`);
}

/**
 * The Redis set of the groups that ever subscribed under `prefix`: every publish fans out to their
 * queues (and always to the default group's). A group stays registered after its consumers close, so
 * its queue keeps what is published while none runs (a durable subscription, like a RabbitMQ queue or
 * a Kafka consumer group). To retire a group: `SREM <prefix>:event-groups <group>`, then obliterate
 * its queue `events.<group>`.
 */
export function bullmqGroupsKey(prefix: string): string {
  return `${prefix}:event-groups`;
}

export interface BullmqBusConfig {
  redisUrl: string;
  /** Redis Cluster seed nodes (`REDIS_CLUSTER_NODES`); empty or absent = `redisUrl`. */
  redisClusterNodes?: readonly string[] | undefined;
  queuePrefix: string;
  concurrency: number;
  maxAttempts: number;
  backoffMs: number;
  /** First snooze delay (a dependency outage; no attempt consumed), doubling up to `snoozeMaxMs`. @defaultValue 1_000 */
  snoozeMs?: number;
  /** @defaultValue 30_000 */
  snoozeMaxMs?: number;
  shutdownGraceMs: number;
  /** BullMQ job lock of an event being projected. @defaultValue 30_000 */
  lockDurationMs?: number;
  /** How often stalled event jobs are looked for. @defaultValue 30_000 */
  stalledIntervalMs?: number;
  /**
   * Events per BullMQ job when a publish carries several (the relay's batches). The consumer's
   * prefetch is `concurrency` jobs, so at most `concurrency × eventsPerJob` events in memory.
   * @defaultValue 100
   */
  eventsPerJob?: number;
  /** The group consuming queue `events`; every publish goes to it, subscribed or not. @defaultValue 'projections' */
  defaultGroup?: string;
}

export interface BullmqBusDeps {
  logger: Logger;
  deadLetters: DeadLetterSink;
  /** Counts and times the consumers' jobs (label `queue`: `events`, `events.<group>`). */
  metrics?: Pick<Metrics, 'instrumentWorker'> | undefined;
  /** Told when a consumer can no longer take jobs (its BullMQ loop ended). Absent: logged only. */
  onFatal?: OnFatal | undefined;
}

/**
 * Starts a BullMQ worker (created with `autorun: false`) that must run until its owner closes it, and
 * watches it: `run()` settling, or its Redis connection ending for good (ioredis gave up or someone
 * closed it; BullMQ would then wait forever, taking nothing), while `stopping()` is false means it can
 * no longer take jobs → `onFatal`. The one supervision of every BullMQ consumer (order worker, bus).
 */
export function runSupervised(
  component: string,
  worker: Worker,
  connection: Redis,
  onFatal: OnFatal,
  stopping: () => boolean,
): Promise<void> {
  connection.once('end', () => {
    if (!stopping()) onFatal(component, new Error('its Redis connection was closed for good'));
  });
  return superviseLoop(component, worker.run(), onFatal, stopping);
}

/**
 * The embedded event bus: one BullMQ queue per subscription group — `events` for the default group
 * (`projections`), `events.<group>` for every other — so every group gets every event and the members
 * of one group compete for its queue's jobs. `subscribe` registers its group in a Redis set
 * ({@link bullmqGroupsKey}) before consuming; `publish` reads that set (one SMEMBERS per call, so a
 * publisher in another process learns a new group at its next publish) and adds the same jobs to every
 * group's queue in one MULTI (all groups or none; job ids make a retried publish a no-op per queue).
 * A group gets what is published once its registration is done: nothing from before (no replay), and
 * the default group's queue always gets everything, like RabbitMQ's queue declared at `start()`.
 *
 * A single event is one job (job id = event id, so a re-published event is not queued twice while the
 * first is pending); a publish of several events — the outbox relay's batches — is cut into batch jobs
 * of `eventsPerJob` events (job id derived from the event ids, same dedupe), so the second BullMQ hop
 * costs Redis one job per batch and group, not per event. A batch job hands every event to the handler
 * at once (the projector coalesces them into one transaction) and completes when all succeeded; each
 * event that failed is split out into its own job on the same group's queue — durably, before the batch
 * job completes — with the delivery counted as an attempt and the backoff applied, and from there
 * follows the one-event path: retries with BullMQ's exponential backoff, then (or at once for poison)
 * `events-dead-letters` and the dead-letter table with the original bytes and the group's queue as
 * origin, so a redrive goes back to that group alone. Ordering: none across concurrent jobs — the
 * projector is order-insensitive by design.
 */
export function createBullmqBus(deps: BullmqBusDeps, config: BullmqBusConfig): EventBus {
  const log = deps.logger.child({ component: 'bullmq-bus' });
  const onFatal = fatalOrLog(deps.onFatal, log);
  let closing = false;
  const connection = createWorkerRedis(
    { url: config.redisUrl, commandTimeoutMs: 0, clusterNodes: config.redisClusterNodes },
    'conveyor-bus',
  );
  const defaultGroup = config.defaultGroup ?? BULLMQ_DEFAULT_GROUP;
  const groupsKey = bullmqGroupsKey(config.queuePrefix);
  const queues = new Map<string, Queue<BullmqEventJob | BullmqEventBatchJob>>();
  /** The queue `name` for adding jobs (split-outs, redrives), opened once. */
  function queueNamed(name: string): Queue<BullmqEventJob | BullmqEventBatchJob> {
    let q = queues.get(name);
    if (!q) {
      q = new Queue<BullmqEventJob | BullmqEventBatchJob>(
        name,
        queueOptions(connection, config.queuePrefix, name),
      );
      q.on('error', (err) => log.warn({ err, queue: name }, 'event queue error'));
      queues.set(name, q);
    }
    return q;
  }
  const defaultQueue = queueNamed(QueueNames.events);
  const dlq = new Queue(
    QueueNames.eventsDeadLetters,
    queueOptions(connection, config.queuePrefix, QueueNames.eventsDeadLetters),
  );
  const jobOptions: JobsOptions = {
    attempts: config.maxAttempts,
    backoff: { type: 'exponential', delay: config.backoffMs, jitter: 0.5 },
    removeOnComplete: { age: 600, count: 10_000 },
    removeOnFail: { count: 1_000 },
  };
  const eventsPerJob = Math.max(1, config.eventsPerJob ?? 100);
  const workers: Worker[] = [];

  /**
   * Records a dead letter (table + `events-dead-letters`) under a deterministic id, so recording twice
   * is harmless. `data` is what travelled: one event's body and headers, or anything unreadable as is.
   */
  async function deadLetter(
    origin: string,
    key: string,
    data: unknown,
    error: Error,
    attempts: number,
    firstFailedAt: Date,
  ): Promise<void> {
    const item = (data ?? {}) as Partial<BullmqEventJob>;
    const headers = item.headers && typeof item.headers === 'object' ? item.headers : {};
    // Per group queue: the same event dead-lettered by two groups is two dead letters.
    const id = `bullmq-${origin}-${key}`;
    await deps.deadLetters.record({
      id,
      transport: 'bullmq',
      origin,
      kind: 'event',
      messageKey: headers[EventHeaders.eventId] ?? key,
      payload: Buffer.from(typeof item.body === 'string' ? item.body : JSON.stringify(data ?? null)),
      headers,
      error: error.message,
      stack: error.stack ?? null,
      attempts,
      correlationId: headers[EventHeaders.correlationId] ?? null,
      subjectId: null,
      firstFailedAt,
    });
    const dlqData = typeof data === 'object' && data !== null ? data : { body: data };
    await dlq.add(
      'dead-letter',
      { deadLetterId: id, ...dlqData, error: error.message, attempts },
      { jobId: id },
    );
    log.warn(
      { deadLetterId: id, correlationId: headers[EventHeaders.correlationId], attempts, err: error },
      'event dead-lettered',
    );
  }

  const firstFailure = (job: Job) => new Date(job.processedOn ?? job.timestamp);

  /** The queues a publish goes to now: the default group's and every registered group's. */
  async function targetQueues(): Promise<string[]> {
    const groups = await connection.smembers(groupsKey);
    const names = new Set<string>([QueueNames.events]);
    for (const group of groups) if (isGroupName(group)) names.add(bullmqGroupQueue(group, defaultGroup));
    return [...names];
  }

  /**
   * Adds `jobs` to every queue in `targets` in one MULTI: all of them or none when the connection
   * fails (the caller retries; job ids make that a no-op where a job is still kept). Unlike
   * `FlowProducer.addBulk`, a command that fails inside the MULTI (e.g. Redis out of memory) fails
   * the publish instead of being ignored. On a Redis Cluster every event queue shares one hash tag
   * (`queueSlotFamily`), so the MULTI stays within one slot, as a cluster requires.
   */
  async function addToQueues(targets: readonly string[], jobs: readonly NewJob[]): Promise<void> {
    const client = await defaultQueue.client;
    const multi = client.multi();
    // BullMQ queues its add script on a MULTI the same way (FlowProducer); its type only names clients.
    const queued = multi as unknown as RedisClient;
    for (const name of targets) {
      const q = queueNamed(name);
      await q.waitUntilReady();
      for (const j of jobs) await new Job(q, j.name, j.data, j.opts, j.opts.jobId).addJob(queued);
    }
    const results = await multi.exec();
    if (!results) throw new Error('event publish: the MULTI was aborted');
    const failed = results.find(([err]) => err);
    if (failed?.[0]) throw failed[0];
  }

  return {
    kind: 'bullmq',
    async start() {
      await defaultQueue.waitUntilReady();
    },
    async publish(events) {
      if (closing) throw new Error('the BullMQ bus is closed');
      if (events.length === 0) return;
      const encoded = events.map((e) => {
        const { body, headers } = encodeEvent(e);
        return { id: e.eventId, type: e.type, data: { body: body.toString('utf8'), headers } };
      });
      const jobs: NewJob[] = [];
      if (encoded.length === 1) {
        const [one] = encoded;
        jobs.push({ name: one!.type, data: one!.data, opts: { ...jobOptions, jobId: one!.id } });
      } else {
        for (let i = 0; i < encoded.length; i += eventsPerJob) {
          const chunk = encoded.slice(i, i + eventsPerJob);
          const jobId = `evb-${createHash('sha256')
            .update(chunk.map((c) => c.id).join(','))
            .digest('hex')
            .slice(0, 40)}`;
          const data: BullmqEventBatchJob = { events: chunk.map((c) => c.data) };
          jobs.push({ name: EVENT_BATCH_JOB, data, opts: { ...jobOptions, jobId } });
        }
      }
      // Every group gets these jobs, or none does (the relay then retries the whole batch).
      await addToQueues(await targetQueues(), jobs);
    },
    async subscribe(group: string, handler: EventHandler): Promise<Subscription> {
      assertGroupName(group);
      const queueName = bullmqGroupQueue(group, defaultGroup);
      const queue = queueNamed(queueName);
      // Registered before consuming, durably: from now on every publisher fans out to this queue too
      // (the default group's queue gets every publish anyway).
      if (queueName !== QueueNames.events) await connection.sadd(groupsKey, group);

      async function one(job: Job<BullmqEventJob>): Promise<void> {
        const attempt = job.attemptsMade + 1 + (job.data?.priorAttempts ?? 0);
        try {
          const event = decodeEvent(job.data?.body);
          await handler(event, {
            attempt,
            transport: 'bullmq',
            trace: carrierFromHeaders(job.data?.headers),
          });
        } catch (err) {
          const error = err instanceof Error ? err : new Error(String(err));
          const final = err instanceof PoisonMessageError || job.attemptsMade + 1 >= (job.opts.attempts ?? 1);
          if (!final) throw error;
          await deadLetter(queueName, String(job.id), job.data, error, attempt, firstFailure(job));
          throw new UnrecoverableError(error.message);
        }
      }

      async function batch(job: Job<BullmqEventBatchJob>): Promise<void> {
        const attempt = job.attemptsMade + 1;
        if (!Array.isArray(job.data?.events)) {
          // Not a batch we wrote: keep its bytes in the dead letters rather than complete it empty.
          const error = new PoisonMessageError('event batch job without an events array');
          await deadLetter(queueName, String(job.id), job.data, error, attempt, firstFailure(job));
          throw new UnrecoverableError(error.message);
        }
        const items = job.data.events;
        const results = await Promise.allSettled(
          items.map(async (item) =>
            handler(decodeEvent(item?.body), {
              attempt,
              transport: 'bullmq',
              trace: carrierFromHeaders(item?.headers),
            }),
          ),
        );
        const failed = items.flatMap((item, index) => {
          const r = results[index]!;
          return r.status === 'rejected' ? [{ item, index, reason: r.reason as unknown }] : [];
        });
        if (failed.length === 0) return;
        // Out of attempts (or poison): straight to the dead letters, one per event, with its own bytes.
        const lastTry = attempt >= Math.min(config.maxAttempts, job.opts.attempts ?? config.maxAttempts);
        const hopeless = failed.filter(({ reason }) => reason instanceof PoisonMessageError || lastTry);
        for (const { item, index, reason } of hopeless) {
          const error = reason instanceof Error ? reason : new Error(String(reason));
          await deadLetter(queueName, `${job.id}-${index}`, item, error, attempt, firstFailure(job));
        }
        // The rest continue alone, this delivery counted and its backoff applied; added before this job
        // completes (if adding fails, the batch job is retried: the inbox absorbs what was applied).
        const retried = failed.filter((f) => !hopeless.includes(f));
        if (retried.length === 0) return;
        await queue.addBulk(
          retried.map(({ item, index }) => ({
            name: item?.headers?.[EventHeaders.eventType] ?? 'event',
            data: {
              body: typeof item?.body === 'string' ? item.body : JSON.stringify(item ?? null),
              headers: item?.headers ?? {},
              priorAttempts: attempt,
            },
            opts: {
              ...jobOptions,
              attempts: config.maxAttempts - attempt,
              delay: backoffDelayMs(attempt, config.backoffMs),
              // Stable across a re-run of this batch job (a stall), and always a valid BullMQ id.
              jobId: `evs-${createHash('sha256').update(`${job.id}|${index}|${attempt}`).digest('hex').slice(0, 40)}`,
            },
          })),
        );
        log.debug(
          { jobId: job.id, failed: failed.length, of: items.length },
          'events split out of a batch job',
        );
      }

      const worker = new Worker<BullmqEventJob | BullmqEventBatchJob>(
        queueName,
        async (job) =>
          job.name === EVENT_BATCH_JOB
            ? batch(job as Job<BullmqEventBatchJob>)
            : one(job as Job<BullmqEventJob>),
        {
          connection,
          prefix: bullmqPrefix(connection, config.queuePrefix, queueName),
          concurrency: config.concurrency,
          autorun: false,
          maxStalledCount: 5,
          // A crashed consumer's jobs come back once their lock expires.
          ...(config.lockDurationMs ? { lockDuration: config.lockDurationMs } : {}),
          ...(config.stalledIntervalMs ? { stalledInterval: config.stalledIntervalMs } : {}),
        },
      );
      worker.on('error', (err) => log.error({ err }, 'event worker error'));
      deps.metrics?.instrumentWorker(worker, queueName);
      workers.push(worker);
      let unsubscribed = false;
      void runSupervised(
        `bullmq-bus consumer ${queueName}`,
        worker,
        connection,
        onFatal,
        () => closing || unsubscribed,
      );
      return {
        close: async () => {
          unsubscribed = true;
          await worker.close();
        },
      };
    },
    async redrive(dl: DeadLetterRecord) {
      // Back to the queue of the group that dead-lettered it (older dead letters: `events`), only.
      if (dl.transport !== 'bullmq' || !isBullmqEventQueue(dl.origin)) {
        throw new Error(
          `dead letter ${dl.id} (${dl.transport}, ${dl.origin}) is not from a BullMQ event queue`,
        );
      }
      const queue = queueNamed(dl.origin);
      const body = dl.payload.toString('utf8');
      const batch = asBatch(body);
      if (batch) await queue.add(EVENT_BATCH_JOB, batch, jobOptions);
      else
        await queue.add(
          dl.headers[EventHeaders.eventType] ?? 'redriven',
          { body, headers: dl.headers },
          jobOptions,
        );
      await dlq.remove(dl.id).catch(() => undefined);
    },
    async close() {
      closing = true;
      await Promise.allSettled(workers.map((w) => w.close()));
      await Promise.allSettled([...queues.values()].map((q) => q.close()));
      await dlq.close();
      await connection.quit().catch(() => connection.disconnect());
    },
  };
}
