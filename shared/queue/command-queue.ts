import { Queue, type JobsOptions } from 'bullmq';
import { queueOptions } from './names.ts';
import type { Redis } from './redis.ts';

export interface CommandJobPolicy {
  attempts: number;
  backoffMs: number;
  keepCompletedSeconds: number;
}

/** Completed jobs a command queue keeps at most, however young: its workers trim to it ({@link trimCompleted}). */
export const KEEP_COMPLETED_MAX = 100_000;

/**
 * Retries with exponential backoff and jitter; completed jobs kept a while so `queued` → `completed`
 * is visible. Only the age is BullMQ's to enforce, in each completion's own script (one command);
 * the count cap there would cost every completion two commands more (ZREVRANGE, ZREMRANGEBYRANK)
 * for a bound that binds only under heavy load — the command workers trim to it every few seconds
 * instead ({@link trimCompleted}).
 */
export function commandJobOptions(policy: CommandJobPolicy): JobsOptions {
  return {
    attempts: policy.attempts,
    backoff: { type: 'exponential', delay: policy.backoffMs, jitter: 0.5 },
    removeOnComplete: { age: policy.keepCompletedSeconds },
    // Dead letters hold the full record; keep a bounded tail of failed jobs for Bull Board.
    removeOnFail: { count: 1_000 },
  };
}

/**
 * Removes the oldest completed jobs of `queue` past the newest `max` (at most `limit` per call, with
 * BullMQ's own clean script: job hashes and the set together). Resolves to how many were removed.
 * Called periodically by the queue's workers: the count cap of {@link commandJobOptions}, enforced
 * within one interval's completions.
 */
export async function trimCompleted(queue: Queue, max: number, limit = 10_000): Promise<number> {
  const client = await queue.client;
  const excess = Math.min((await client.zcard(queue.toKey('completed'))) - max, limit);
  if (excess <= 0) return 0;
  // The newest of the jobs to remove: `clean` takes those finished at or before it, oldest first.
  const [, score] = await client.zrange(queue.toKey('completed'), excess - 1, excess - 1, 'WITHSCORES');
  if (score === undefined) return 0;
  return (await queue.clean(Math.max(0, Date.now() - Number(score)), excess, 'completed')).length;
}

/** A module's command queue: jobs named after its command, data of its job schema. */
export type CommandQueue<Job = unknown> = Queue<Job, unknown, string>;

/**
 * The producer side of a module's command queue (its name is the module's name); on a Redis Cluster
 * under its own hash tag ({@link queueOptions}).
 */
export function createCommandQueue<Job = unknown>(
  connection: Redis,
  prefix: string,
  name: string,
): CommandQueue<Job> {
  return new Queue<Job, unknown, string>(name, queueOptions(connection, prefix, name));
}
