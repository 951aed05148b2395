import { Queue, type Job } from 'bullmq';
import { bullmqGroupQueue, bullmqGroupsKey } from '../bus/bullmq-bus.ts';
import { isGroupName } from '../bus/event-bus.ts';
import type { Redis } from '../queue/redis.ts';
import { ALL_QUEUES, queueOptions, type QueueName } from '../queue/names.ts';

/** One queue's depth by state, as the `/metrics` gauges and the KEDA scaling endpoint report it. */
export interface QueueStats {
  queue: QueueName;
  /**
   * What more workers would drain: `waiting + prioritized`. Delayed jobs (retries in backoff) are not
   * runnable yet and active ones already have a worker, so neither asks for another replica.
   */
  backlog: number;
  /** Jobs in the wait list (including BullMQ's legacy `paused` list). */
  waiting: number;
  /** Jobs with a priority: BullMQ keeps them in a sorted set, not in the wait list. */
  prioritized: number;
  delayed: number;
  active: number;
  failed: number;
  completed: number;
  waitingChildren: number;
  /** The queue is paused: workers take nothing, so adding replicas would not help. */
  paused: boolean;
  /** Age of the oldest runnable job, from when it was enqueued; 0 when nothing waits. */
  oldestWaitingAgeSeconds: number;
}

/** Reads {@link QueueStats} for the queues of one prefix. */
export interface QueueStatsReader {
  /** The queues known up front (a module's two, the event queues): what the scaling endpoint serves. */
  readonly queues: readonly QueueName[];
  /**
   * {@link QueueStatsReader.queues} plus, unless `eventGroups` is off, the queue of every BullMQ
   * event group registered now (`events.<group>`, from the bus's group set in Redis): a group's
   * queue holds work — and a failed set — like any other. Read again on each call.
   */
  list(): Promise<readonly QueueName[]>;
  /** `true` for a name this reader knows (request input is checked against this). */
  has(name: string): name is QueueName;
  read(queue: QueueName): Promise<QueueStats>;
  /** Releases the `Queue` handles; the shared Redis connection stays open (its owner closes it). */
  close(): Promise<void>;
}

export interface QueueStatsOptions {
  connection: Redis;
  prefix: string;
  /** @defaultValue every queue of `shared/queue/names.ts` */
  queues?: readonly QueueName[];
  /** Whether {@link QueueStatsReader.list} adds the registered event groups' queues. @defaultValue true when `queues` is not given */
  eventGroups?: boolean;
  /** Clock for ages; tests pass their own. @defaultValue Date.now */
  now?: () => number;
}

function ageSeconds(jobs: readonly (Job | undefined)[], now: number): number {
  let oldest = Number.POSITIVE_INFINITY;
  for (const job of jobs) if (job && job.timestamp < oldest) oldest = job.timestamp;
  return Number.isFinite(oldest) ? Math.max(0, (now - oldest) / 1_000) : 0;
}

/**
 * Queue depth straight from BullMQ (`getJobCounts`), plus the age of the oldest runnable job.
 *
 * Where the oldest job sits: BullMQ LPUSHes new jobs onto the wait list and workers take from the
 * right, so the oldest waiting job is the list's tail — `getWaiting(0, 0)` asks for ascending order,
 * which reads the tail (proved by test/integration/metrics.test.ts). Prioritized jobs live in a sorted
 * set ordered by priority, not age; the next one to run is a lower bound of their oldest, and we take
 * the larger of the two ages so a starved priority band still shows.
 * @example const stats = await createQueueStatsReader({ connection, prefix }).read('orders');
 */
export function createQueueStatsReader(options: QueueStatsOptions): QueueStatsReader {
  const queues = options.queues ?? ALL_QUEUES;
  const eventGroups = options.eventGroups ?? options.queues === undefined;
  const now = options.now ?? Date.now;
  const handles = new Map<QueueName, Queue>();
  const handle = (name: QueueName): Queue => {
    let q = handles.get(name);
    if (!q) {
      q = new Queue(name, queueOptions(options.connection, options.prefix, name));
      handles.set(name, q);
    }
    return q;
  };
  let closing: Promise<void> | undefined;
  return {
    queues,
    has: (name): name is QueueName => (queues as readonly string[]).includes(name),
    async list() {
      if (!eventGroups) return queues;
      const groups = await options.connection.smembers(bullmqGroupsKey(options.prefix));
      const more = groups
        .filter(isGroupName)
        .map((g) => bullmqGroupQueue(g))
        .filter((q) => !queues.includes(q))
        .sort();
      return [...queues, ...new Set(more)];
    },
    async read(name) {
      const q = handle(name);
      const [counts, waitingTail, nextPrioritized, paused] = await Promise.all([
        q.getJobCounts(
          'waiting',
          'prioritized',
          'delayed',
          'active',
          'failed',
          'completed',
          'waiting-children',
        ),
        q.getWaiting(0, 0),
        q.getPrioritized(0, 0),
        q.isPaused(),
      ]);
      const n = (state: string) => counts[state] ?? 0;
      // getJobCounts('waiting') also counts the legacy `paused` list under its own key.
      const waiting = n('waiting') + n('paused');
      const prioritized = n('prioritized');
      return {
        queue: name,
        backlog: waiting + prioritized,
        waiting,
        prioritized,
        delayed: n('delayed'),
        active: n('active'),
        failed: n('failed'),
        completed: n('completed'),
        waitingChildren: n('waiting-children'),
        paused,
        oldestWaitingAgeSeconds: ageSeconds([...waitingTail, ...nextPrioritized], now()),
      };
    },
    close: () =>
      (closing ??= (async () => {
        await Promise.allSettled([...handles.values()].map((q) => q.close()));
        handles.clear();
      })()),
  };
}
