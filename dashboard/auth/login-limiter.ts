import { RateLimiterRedis, RateLimiterRes } from 'rate-limiter-flexible';
import type { Redis } from '../../shared/queue/redis.ts';

export type LimitDecision = { allowed: true } | { allowed: false; retryAfterSeconds: number };

/** Counts login attempts per IP and user name, in Redis so every replica shares the count. */
export interface LoginLimiter {
  /** Counts one attempt. @throws when Redis cannot answer (callers refuse the login: fail closed). */
  consume(ip: string, user: string): Promise<LimitDecision>;
  /** Forgets the attempts after a successful login. */
  reset(ip: string, user: string): Promise<void>;
}

export interface LoginLimiterOptions {
  prefix: string;
  /** Attempts allowed per window. */
  points: number;
  windowSeconds: number;
}

// User names are case-folded and bounded so "Admin"/"admin" share a budget and keys stay small.
const keyOf = (ip: string, user: string) => `${ip}|${user.toLowerCase().slice(0, 100)}`;

/** @example const limiter = createLoginLimiter(redis, { prefix, points: 10, windowSeconds: 60 }); */
export function createLoginLimiter(redis: Redis, options: LoginLimiterOptions): LoginLimiter {
  const limiter = new RateLimiterRedis({
    storeClient: redis,
    keyPrefix: `${options.prefix}:dashboard:login`,
    points: options.points,
    duration: options.windowSeconds,
    rejectIfRedisNotReady: true,
  });
  return {
    async consume(ip, user) {
      try {
        await limiter.consume(keyOf(ip, user));
        return { allowed: true };
      } catch (err) {
        if (err instanceof RateLimiterRes) {
          return { allowed: false, retryAfterSeconds: Math.max(1, Math.ceil(err.msBeforeNext / 1000)) };
        }
        throw err;
      }
    },
    async reset(ip, user) {
      await limiter.delete(keyOf(ip, user));
    },
  };
}
