import type { MiddlewareHandler } from 'hono';
import type { Redis } from 'ioredis';
import { DependencyUnavailableError } from '../../shared/errors/domain.ts';
import { problem } from '../../shared/errors/problem.ts';
import type { ApiEnv } from '../context.ts';
import { problemResponse } from './errors.ts';
import { setResponseHeader } from './headers.ts';

export interface RateLimitOptions {
  redis: Redis;
  prefix: string;
  windowMs: number;
  max: number;
}

/**
 * Fixed window in one round trip: start the window if there is none, add the points, read what is
 * left of it. Same keys and semantics as rate-limiter-flexible's RateLimiterRedis (which this
 * replaces), so replicas of either version share one budget.
 */
const CONSUME_SCRIPT = `redis.call('set', KEYS[1], 0, 'PX', ARGV[2], 'NX')
local consumed = redis.call('incrby', KEYS[1], ARGV[1])
local ttl = redis.call('pttl', KEYS[1])
if ttl == -1 then
  redis.call('pexpire', KEYS[1], ARGV[2])
  ttl = tonumber(ARGV[2])
end
return {consumed, ttl}`;

/** What one request learned from the window: its own position in it and when the window ends. */
interface Outcome {
  consumed: number;
  msBeforeNext: number;
}

interface Waiting {
  resolve: (o: Outcome) => void;
  reject: (err: unknown) => void;
}

type ConsumeRedis = Redis & {
  conveyorRateLimitConsume(key: string, points: number, windowMs: number): Promise<[number, number]>;
};

/**
 * Consumes one point per call, counted in Redis. Calls for the same key within one event-loop turn
 * share one script call (`INCRBY n`); each caller gets its own position in the window, exactly as if
 * it had sent its own `INCRBY 1`.
 */
function windowCounter(redis: Redis, windowMs: number): (key: string) => Promise<Outcome> {
  const client = redis as ConsumeRedis;
  if (typeof client.conveyorRateLimitConsume !== 'function') {
    redis.defineCommand('conveyorRateLimitConsume', { numberOfKeys: 1, lua: CONSUME_SCRIPT });
  }
  let pending = new Map<string, Waiting[]>();
  let scheduled = false;

  const flush = () => {
    scheduled = false;
    const batch = pending;
    pending = new Map();
    for (const [key, waiting] of batch) {
      const settle = ([consumed, ttl]: [number, number]) => {
        const first = consumed - waiting.length;
        const msBeforeNext = Math.max(0, ttl);
        waiting.forEach((w, i) => w.resolve({ consumed: first + i + 1, msBeforeNext }));
      };
      const fail = (err: unknown) => {
        for (const w of waiting) w.reject(err);
      };
      // Not connected: fail now (503) rather than wait for a reconnect.
      if (redis.status !== 'ready') fail(new Error('redis not ready'));
      else client.conveyorRateLimitConsume(key, waiting.length, windowMs).then(settle, fail);
    }
  };

  return (key) =>
    new Promise<Outcome>((resolve, reject) => {
      const waiting = pending.get(key);
      if (waiting) waiting.push({ resolve, reject });
      else pending.set(key, [{ resolve, reject }]);
      if (!scheduled) {
        scheduled = true;
        setImmediate(flush);
      }
    });
}

/**
 * Fixed-window limit per API key (the authenticated principal, never a spoofable header), counted in
 * Redis so every API replica shares it. Sets `RateLimit-*` headers; 429 with `Retry-After` when over.
 */
export function rateLimit(options: RateLimitOptions): MiddlewareHandler<ApiEnv> {
  const windowSeconds = Math.max(1, Math.round(options.windowMs / 1000));
  const consume = windowCounter(options.redis, windowSeconds * 1000);
  const limit = String(options.max);
  const policy = `${options.max};w=${Math.round(options.windowMs / 1000)}`;
  const detail = `at most ${options.max} requests per ${options.windowMs / 1000} s`;
  const keyPrefix = `${options.prefix}:ratelimit:`;
  return async (c, next) => {
    if (c.req.method === 'OPTIONS') return next();
    let outcome: Outcome;
    try {
      outcome = await consume(keyPrefix + c.get('principal'));
    } catch {
      throw new DependencyUnavailableError('redis');
    }
    const resetSeconds = Math.ceil(outcome.msBeforeNext / 1000);
    const remaining = String(Math.max(0, options.max - outcome.consumed));
    const reset = String(resetSeconds);
    if (outcome.consumed > options.max) {
      return problemResponse(c, problem(429, 'rate_limit.exceeded', detail), {
        'ratelimit-limit': limit,
        'ratelimit-remaining': remaining,
        'ratelimit-reset': reset,
        'ratelimit-policy': policy,
        'retry-after': String(Math.max(1, resetSeconds)),
      });
    }
    // On whatever response the route gives, errors included.
    setResponseHeader(c, 'ratelimit-limit', limit);
    setResponseHeader(c, 'ratelimit-remaining', remaining);
    setResponseHeader(c, 'ratelimit-reset', reset);
    setResponseHeader(c, 'ratelimit-policy', policy);
    await next();
  };
}
