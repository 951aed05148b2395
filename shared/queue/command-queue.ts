import { Queue, type JobsOptions } from 'bullmq';
import { queueOptions } from './names.ts';
import type { Redis } from './redis.ts';

export interface CommandJobPolicy {
  attempts: number;
  backoffMs: number;
  keepCompletedSeconds: number;
}

/** Retries with exponential backoff and jitter; completed jobs kept a while so `queued` → `completed` is visible. */
export function commandJobOptions(policy: CommandJobPolicy): JobsOptions {
  return {
    attempts: policy.attempts,
    backoff: { type: 'exponential', delay: policy.backoffMs, jitter: 0.5 },
    removeOnComplete: { age: policy.keepCompletedSeconds, count: 100_000 },
    // Dead letters hold the full record; keep a bounded tail of failed jobs for Bull Board.
    removeOnFail: { count: 1_000 },
  };
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
