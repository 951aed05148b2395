import { OverloadedError } from '../errors/domain.ts';
import type { RedisCall } from './redis-call.ts';

/** How long one backlog count answers for every request, in ms. */
const BACKLOG_CHECK_MS = 500;

/** What load shedding reads of a command queue: a BullMQ `Queue` is one. */
export interface BacklogSource {
  /** The queue's name, which a refusal names (`the refunds backlog is over its ceiling`). */
  readonly name: string;
  getJobCounts(...types: ('waiting' | 'delayed' | 'prioritized')[]): Promise<Record<string, number>>;
}

/** What {@link loadShedding} needs besides the queue. */
export interface LoadSheddingOptions {
  /** Jobs waiting (waiting, delayed, prioritized) at which new commands are refused; ≤ 0 turns shedding off. */
  maxBacklog: number;
  redisCall: RedisCall;
}

/**
 * A check to await before accepting a command: rejects with {@link OverloadedError} (503) while
 * `queue`'s backlog is at or over `maxBacklog`. The count is cached for 500 ms, so a burst costs one
 * Redis call, not one per request.
 * @example const shedIfOverloaded = loadShedding(ordersQueue, { maxBacklog: 100_000, redisCall }); await shedIfOverloaded();
 */
export function loadShedding(queue: BacklogSource, options: LoadSheddingOptions): () => Promise<void> {
  const { maxBacklog, redisCall } = options;
  let backlogCheckedAt = 0;
  let backlogOver = false;
  return async function shedIfOverloaded(): Promise<void> {
    if (maxBacklog <= 0) return;
    if (Date.now() - backlogCheckedAt > BACKLOG_CHECK_MS) {
      const counts = await redisCall(() => queue.getJobCounts('waiting', 'delayed', 'prioritized'));
      backlogOver = Object.values(counts).reduce((a, b) => a + b, 0) >= maxBacklog;
      backlogCheckedAt = Date.now();
    }
    if (backlogOver) throw new OverloadedError({ queue: queue.name });
  };
}
