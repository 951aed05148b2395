import type { MiddlewareHandler } from 'hono';
import type { Redis } from 'ioredis';
import { RateLimiterRedis, RateLimiterRes } from 'rate-limiter-flexible';
import { DependencyUnavailableError } from '../../shared/errors/domain.ts';
import { problem } from '../../shared/errors/problem.ts';
import type { ApiEnv } from '../context.ts';
import { problemResponse } from './errors.ts';

export interface RateLimitOptions {
  redis: Redis;
  prefix: string;
  windowMs: number;
  max: number;
}

/**
 * Fixed-window limit per API key (the authenticated principal, never a spoofable header), counted in
 * Redis so every API replica shares it. Sets `RateLimit-*` headers; 429 with `Retry-After` when over.
 */
export function rateLimit(options: RateLimitOptions): MiddlewareHandler<ApiEnv> {
  const limiter = new RateLimiterRedis({
    storeClient: options.redis,
    keyPrefix: `${options.prefix}:ratelimit`,
    points: options.max,
    duration: Math.max(1, Math.round(options.windowMs / 1000)),
    rejectIfRedisNotReady: true,
  });
  return async (c, next) => {
    if (c.req.method === 'OPTIONS') return next();
    let res: RateLimiterRes;
    let limited = false;
    try {
      res = await limiter.consume(c.get('principal'));
    } catch (err) {
      if (!(err instanceof RateLimiterRes)) throw new DependencyUnavailableError('redis');
      res = err;
      limited = true;
    }
    const resetSeconds = Math.ceil(res.msBeforeNext / 1000);
    const headers = {
      'ratelimit-limit': String(options.max),
      'ratelimit-remaining': String(Math.max(0, res.remainingPoints)),
      'ratelimit-reset': String(resetSeconds),
      'ratelimit-policy': `${options.max};w=${Math.round(options.windowMs / 1000)}`,
    };
    if (limited) {
      return problemResponse(
        c,
        problem(
          429,
          'rate_limit.exceeded',
          `at most ${options.max} requests per ${options.windowMs / 1000} s`,
        ),
        {
          ...headers,
          'retry-after': String(Math.max(1, resetSeconds)),
        },
      );
    }
    await next();
    for (const [k, v] of Object.entries(headers)) c.header(k, v);
  };
}
