import { DependencyUnavailableError, DomainError } from '../errors/domain.ts';
import { withDeadline } from '../runtime/deadline.ts';

/** Runs one Redis call for a request; see {@link redisCaller}. */
export type RedisCall = <T>(fn: () => Promise<T>) => Promise<T>;

/**
 * Wraps the Redis calls a request makes under a deadline of `timeoutMs`.
 * Redis failures become 503: nothing was enqueued, and the client may retry.
 * A {@link DomainError} thrown by `fn` (e.g. an idempotency conflict) passes through unchanged.
 * @example const redisCall = redisCaller(4_000); const job = await redisCall(() => queue.getJob(id));
 */
export function redisCaller(timeoutMs: number): RedisCall {
  return async (fn) => {
    try {
      return await withDeadline(fn(), timeoutMs, () => new DependencyUnavailableError('redis'));
    } catch (err) {
      if (err instanceof DomainError) throw err;
      throw new DependencyUnavailableError('redis');
    }
  };
}
