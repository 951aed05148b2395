import { Queue, type Job } from 'bullmq';
import { bullmqGroupQueue, bullmqGroupsKey } from '../bus/bullmq/bus.ts';
import { isGroupName } from '../bus/event-bus.ts';
import { readFairBacklog, type FairBacklog } from '../fairness/fair-queue.ts';
import type { Redis } from '../queue/redis.ts';
import {
  allQueueNames,
  commandQueueNames,
  queueOptions,
  type QueueModules,
  type QueueName,
} from '../queue/names.ts';

/** One queue's depth by state, as the `/metrics` gauges and the KEDA scaling endpoint report it. */
export interface QueueStats {
  queue: QueueName;
  /**
   * What more workers would drain: `waiting + prioritized + held`. Delayed jobs (retries in backoff)
   * are not runnable yet and active ones already have a worker, so neither asks for another replica.
   */
  backlog: number;
  /** Jobs in the wait list (including BullMQ's legacy `paused` list). */
  waiting: number;
  /** Jobs with a priority: BullMQ keeps them in a sorted set, not in the wait list. */
  prioritized: number;
  /**
   * Commands waiting their tenant's turn (shared/fairness): runnable work the fair queue lets into
   * the wait list a little at a time. BullMQ stores them as delayed jobs with a long delay; they are
   * counted here, in the backlog, and not in `delayed`. 0 for a queue without fairness.
   */
  held: number;
  /** Delayed jobs that are not {@link QueueStats.held}: retries in backoff, jobs added with a delay. */
  delayed: number;
  active: number;
  failed: number;
  completed: number;
  waitingChildren: number;
  /** The queue is paused: workers take nothing, so adding replicas would not help. */
  paused: boolean;
  /** Age of the oldest runnable job (held ones included), from when it was enqueued; 0 when nothing waits. */
  oldestWaitingAgeSeconds: number;
}

/** {@link QueueStats} and, for a fair queue, its tenants, read together. */
export interface QueueTenants {
  stats: QueueStats;
  /** The `top` tenants with the most commands held and the rest summed; null for a queue without fairness. */
  tenants: FairBacklog | null;
  /** When it was read (the reader's clock, ms): what a throughput is measured between. */
  at: number;
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
  /**
   * {@link QueueStatsReader.read} plus, for a command queue, its fair queue's `top` tenants by backlog
   * (`FairQueue.backlog`), in the same reads (read does this with `top` 0).
   */
  readTenants(queue: QueueName, top: number): Promise<QueueTenants>;
  /** Releases the `Queue` handles; the shared Redis connection stays open (its owner closes it). */
  close(): Promise<void>;
}

export interface QueueStatsOptions {
  connection: Redis;
  prefix: string;
  /** The command modules whose queues are read (the registry's, from the composition root). */
  modules: QueueModules;
  /** @defaultValue every queue of `modules` and the event queues (`allQueueNames`) */
  queues?: readonly QueueName[];
  /** Whether {@link QueueStatsReader.list} adds the registered event groups' queues. @defaultValue true when `queues` is not given */
  eventGroups?: boolean;
  /** Clock for ages; tests pass their own. @defaultValue Date.now */
  now?: () => number;
  /**
   * The queues with a fair queue (shared/fairness) whose held commands belong in the backlog.
   * @defaultValue every module's command queue (`commandQueueNames(modules)`)
   */
  fairQueues?: readonly QueueName[];
}

function ageSeconds(timestamps: readonly (number | null | undefined)[], now: number): number {
  let oldest = Number.POSITIVE_INFINITY;
  for (const at of timestamps) if (typeof at === 'number' && at < oldest) oldest = at;
  return Number.isFinite(oldest) ? Math.max(0, (now - oldest) / 1_000) : 0;
}

/** Every held command of a fair backlog, named tenants and the rest, and when the oldest was accepted. */
function heldOf(b: FairBacklog | null): { held: number; oldestAt: (number | null)[] } {
  if (!b) return { held: 0, oldestAt: [] };
  return {
    held: b.tenants.reduce((n, t) => n + t.waiting, b.others.waiting),
    oldestAt: [...b.tenants.map((t) => t.oldestAt), b.others.oldestAt],
  };
}

/**
 * Queue depth straight from BullMQ (`getJobCounts`), plus the age of the oldest runnable job.
 *
 * Where the oldest job sits: BullMQ LPUSHes new jobs onto the wait list and workers take from the
 * right, so the oldest waiting job is the list's tail — `getWaiting(0, 0)` asks for ascending order,
 * which reads the tail (proved by test/integration/metrics.test.ts). Prioritized jobs live in a sorted
 * set ordered by priority, not age; the next one to run is a lower bound of their oldest, and we take
 * the larger of the two ages so a starved priority band still shows.
 *
 * Fairness (shared/fairness): a command queue keeps only about `FAIRNESS_DEPTH` jobs in its wait list;
 * the rest wait their tenant's turn as BullMQ *delayed* jobs with a long hold. They are work more
 * workers would drain, so they count in `backlog` (as `held`, taken out of `delayed`) and in the oldest
 * age — else `/v1/scaling` and KEDA would see at most the depth. Their count is the fair queue's
 * (`FairQueue.backlog`: one script, O(tenants waiting)), read beside BullMQ's counts; a promotion
 * between the two reads can count a few jobs twice or not at all, never more than one dispatch moved.
 * @example const stats = await createQueueStatsReader({ connection, prefix, modules: MODULES }).read('orders');
 */
export function createQueueStatsReader(options: QueueStatsOptions): QueueStatsReader {
  const queues = options.queues ?? allQueueNames(options.modules);
  const eventGroups = options.eventGroups ?? options.queues === undefined;
  const now = options.now ?? Date.now;
  const fairQueues = options.fairQueues ?? commandQueueNames(options.modules);
  const handles = new Map<QueueName, Queue>();
  const handle = (name: QueueName): Queue => {
    let q = handles.get(name);
    if (!q) {
      q = new Queue(name, queueOptions(options.connection, options.prefix, name));
      handles.set(name, q);
    }
    return q;
  };
  async function readTenants(name: QueueName, top: number): Promise<QueueTenants> {
    const q = handle(name);
    const fair = fairQueues.includes(name);
    const [counts, waitingTail, nextPrioritized, paused, tenants] = await Promise.all([
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
      fair
        ? readFairBacklog(options.connection, q.toKey(''), Math.max(0, Math.floor(top)))
        : Promise.resolve(null),
    ]);
    const at = now();
    const n = (state: string) => counts[state] ?? 0;
    // getJobCounts('waiting') also counts the legacy `paused` list under its own key.
    const waiting = n('waiting') + n('paused');
    const prioritized = n('prioritized');
    const { held, oldestAt } = heldOf(tenants);
    const stats: QueueStats = {
      queue: name,
      backlog: waiting + prioritized + held,
      waiting,
      prioritized,
      held,
      // A held id whose add has not arrived yet (or whose job is gone) is in the fair count, not BullMQ's.
      delayed: Math.max(0, n('delayed') - held),
      active: n('active'),
      failed: n('failed'),
      completed: n('completed'),
      waitingChildren: n('waiting-children'),
      paused,
      oldestWaitingAgeSeconds: ageSeconds(
        [...[...waitingTail, ...nextPrioritized].map((j: Job | undefined) => j?.timestamp), ...oldestAt],
        at,
      ),
    };
    return { stats, tenants, at };
  }

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
    read: async (name) => (await readTenants(name, 0)).stats,
    readTenants,
    close: () =>
      (closing ??= (async () => {
        await Promise.allSettled([...handles.values()].map((q) => q.close()));
        handles.clear();
      })()),
  };
}
