import { createHash } from 'node:crypto';
import { Job, Queue, Worker, type JobsOptions, type RedisClient } from 'bullmq';
import type { DeadLetterRecord, DeadLetterSink } from '../../dead-letters/dead-letter.ts';
import type { EventEnvelope } from '../../domain/events.ts';
import { createDeliveryCore, type DeliveryCoreDeps } from '../../delivery/core.ts';
import { contentId } from '../../delivery/dead-letter.ts';
import type { Logger } from '../../observability/logger.ts';
import type { Metrics } from '../../observability/metrics.ts';
import { bullmqPrefix, queueOptions, QueueNames } from '../../queue/names.ts';
import { createWorkerRedis, type Redis } from '../../queue/redis.ts';
import { fatalOrLog, superviseLoop, type OnFatal } from '../../runtime/lifecycle.ts';
import { createEventConsumer } from './consumer.ts';
import {
  EVENT_BATCH_JOB,
  EVENT_PACK_JOB,
  packEvents,
  type BullmqEventBatchJob,
  type BullmqEventJob,
  type BullmqEventPackJob,
} from './job-delivery.ts';
import { encodeEvent, EventHeaders } from '../codec.ts';
import {
  assertGroupName,
  isGroupName,
  type EventBus,
  type EventHandler,
  type Subscription,
} from '../event-bus.ts';

export {
  EVENT_BATCH_JOB,
  EVENT_PACK_JOB,
  type BullmqEventBatchJob,
  type BullmqEventJob,
  type BullmqEventPackJob,
};

/** What an event job carries: one event, a batch of encoded events, or a pack of events. */
type EventJobData = BullmqEventJob | BullmqEventBatchJob | BullmqEventPackJob;

/** One job a publish adds to each group's queue. */
interface NewJob {
  name: string;
  data: EventJobData;
  opts: JobsOptions & { jobId: string };
}

/**
 * A dead letter holding a whole batch or pack job (e.g. read by a consumer that predates batches, or
 * packs, during a rolling deploy) is redriven as that job again; anything else is one event.
 */
function asMany(body: string): { name: string; data: BullmqEventBatchJob | BullmqEventPackJob } | undefined {
  if (!body.startsWith('{"events":[') && !body.startsWith('{"packed":[')) return undefined;
  try {
    const parsed = JSON.parse(body) as { events?: unknown; packed?: unknown; traces?: unknown };
    if (Array.isArray(parsed.events))
      return { name: EVENT_BATCH_JOB, data: { events: parsed.events as BullmqEventJob[] } };
    if (Array.isArray(parsed.packed)) {
      const data: BullmqEventPackJob = { packed: parsed.packed as unknown[] };
      if (Array.isArray(parsed.traces)) data.traces = parsed.traces as BullmqEventPackJob['traces'];
      return { name: EVENT_PACK_JOB, data };
    }
    return undefined;
  } catch {
    return undefined;
  }
}

/**
 * The job id of a redriven copy: the message's own id (its event id) and which redrive this is, so
 * Bull Board finds it by event; never the original's id (still kept by `removeOnComplete`), nor an
 * earlier copy's, even for a caller that did not count the redrive (the time makes it unique); always
 * a valid BullMQ id (no ':', never an integer).
 */
function redriveJobId(messageId: string, redriveCount: number, now = Date.now()): string {
  const safe = /^[A-Za-z0-9._-]{1,120}$/.test(messageId)
    ? messageId
    : `h${createHash('sha256').update(messageId).digest('hex').slice(0, 32)}`;
  return `${safe}-r${redriveCount}-${now.toString(36)}`;
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
 * a Kafka consumer group). To retire a group: `npm run groups:retire -- <group>` (shared/bus/retire-group.ts).
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
  /**
   * How a publish of several events is stored: `pack` — each event's JSON inline in the job
   * ({@link BullmqEventPackJob}); `batch` — each event's encoded bytes and headers
   * ({@link BullmqEventBatchJob}), what consumers before packs read. Consumers read both; a consumer
   * before packs dead-letters a pack (redrivable), so a rolling deploy that keeps older consumers
   * running publishes `batch` until they are gone. @defaultValue 'pack'
   */
  manyFormat?: 'pack' | 'batch';
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
  /** Told each verdict the consumers' delivery cores carry out (metrics). */
  onVerdict?: DeliveryCoreDeps['onVerdict'];
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
 * first is pending); a publish of several events — the outbox relay's batches — is cut into pack jobs
 * of `eventsPerJob` events (job id derived from the event ids, same dedupe), so the second BullMQ hop
 * costs Redis one job per batch and group, not per event: a BullMQ job costs ~49 Redis commands per
 * group to add, take and finish (measured), a pack of 70 events ~0.7 per event. A pack holds each
 * event's JSON inline ({@link BullmqEventPackJob}; `manyFormat: 'batch'` writes the older
 * {@link BullmqEventBatchJob} of encoded bytes, which every consumer reads too). A pack or batch job
 * hands every event to the handler at once (the projector coalesces them into one transaction) and
 * completes once every event is settled; an event that failed gets its own verdict — a poison one is
 * dead-lettered alone, with the bytes and headers it would have been published with alone — and one
 * handed back is split out into its own job on the same group's queue — durably, before the pack
 * job completes — carrying its attempt.
 *
 * Every decision about a failure is the delivery core's (`shared/delivery`, one per group): attempts,
 * backoff, snoozes (a PostgreSQL outage costs no attempt), the last attempt, the dead-letter id (from
 * the event id, stable across redrives) and its record, parking while it cannot be recorded. This bus
 * only carries them out ({@link createEventConsumer}): a job completes (also once dead-lettered: it
 * returns its dead-letter id) or moves to `delayed` carrying its state; it never ends in `failed`
 * because of a verdict. Dead letters go to the table and `events-dead-letters` with the original bytes
 * and the group's queue as origin, so a redrive goes back to that group alone. Ordering: none across
 * concurrent jobs — the projector is order-insensitive by design.
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
  const queues = new Map<string, Queue<EventJobData>>();
  /** The queue `name` for adding jobs (split-outs, redrives), opened once. */
  function queueNamed(name: string): Queue<EventJobData> {
    let q = queues.get(name);
    if (!q) {
      q = new Queue<EventJobData>(name, queueOptions(connection, config.queuePrefix, name));
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
    // BullMQ's own retry is only a safety net: the processor never fails a job because of a verdict
    // (it hands it back instead). It retries a job whose hand-back failed (Redis refused it); its
    // count of those is the job's attempt only where it is larger than ours (`deliveryStateOf`, as for
    // commands). Once used up, the `failed` listener dead-letters the job.
    attempts: config.maxAttempts,
    backoff: { type: 'exponential', delay: config.backoffMs, jitter: 0.5 },
    removeOnComplete: { age: 600, count: 10_000 },
    removeOnFail: { count: 1_000 },
  };
  const eventsPerJob = Math.max(1, config.eventsPerJob ?? 100);
  const manyFormat = config.manyFormat ?? 'pack';
  const workers: Worker[] = [];

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
      const encode = (e: EventEnvelope): BullmqEventJob => {
        const { body, headers } = encodeEvent(e);
        return { body: body.toString('utf8'), headers };
      };
      const jobs: NewJob[] = [];
      if (events.length === 1) {
        const [one] = events;
        jobs.push({ name: one!.type, data: encode(one!), opts: { ...jobOptions, jobId: one!.eventId } });
      } else {
        for (let i = 0; i < events.length; i += eventsPerJob) {
          const chunk = events.slice(i, i + eventsPerJob);
          const jobId = `evb-${createHash('sha256')
            .update(chunk.map((e) => e.eventId).join(','))
            .digest('hex')
            .slice(0, 40)}`;
          const opts = { ...jobOptions, jobId };
          if (manyFormat === 'pack') jobs.push({ name: EVENT_PACK_JOB, data: packEvents(chunk), opts });
          else jobs.push({ name: EVENT_BATCH_JOB, data: { events: chunk.map(encode) }, opts });
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

      const core = createDeliveryCore(
        { sink: deps.deadLetters, logger: deps.logger, onVerdict: deps.onVerdict },
        {
          maxAttempts: config.maxAttempts,
          backoffMs: config.backoffMs,
          snoozeMs: config.snoozeMs,
          snoozeMaxMs: config.snoozeMaxMs,
        },
        queueName,
      );
      const consumer = createEventConsumer({
        queueName,
        queue,
        deadLetterQueue: dlq,
        core,
        handler,
        jobOptions,
        logger: deps.logger,
      });
      const worker = new Worker<EventJobData>(queueName, consumer.process, {
        connection,
        prefix: bullmqPrefix(connection, config.queuePrefix, queueName),
        concurrency: config.concurrency,
        autorun: false,
        // A crashed consumer's jobs come back once their lock expires; a job stalled more often than
        // this is failed by BullMQ itself, and the `failed` listener dead-letters it.
        maxStalledCount: 5,
        ...(config.lockDurationMs ? { lockDuration: config.lockDurationMs } : {}),
        ...(config.stalledIntervalMs ? { stalledInterval: config.stalledIntervalMs } : {}),
      });
      worker.on('failed', consumer.onFailed);
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
      const many = asMany(body);
      // A fresh job (attempt 1) under a new job id. Should it fail again, its dead letter's id comes
      // from the event id in its headers, as this one's did: the record is updated, not doubled.
      const messageId = dl.headers[EventHeaders.eventId] ?? dl.messageKey ?? contentId(dl.payload);
      const opts = { ...jobOptions, jobId: redriveJobId(messageId, dl.redriveCount) };
      if (many) await queue.add(many.name, many.data, opts);
      else
        await queue.add(
          dl.headers[EventHeaders.eventType] ?? 'redriven',
          { body, headers: dl.headers },
          opts,
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
