import type { MiddlewareHandler } from 'hono';
import type { Redis } from '../../shared/queue/redis.ts';
import { DependencyUnavailableError } from '../../shared/errors/domain.ts';
import { problem } from '../../shared/errors/problem.ts';
import type { RateLimits } from '../../shared/security/api-keys.ts';
import type { ApiEnv } from '../../shared/http/context.ts';
import { problemResponse } from '../../shared/http/errors.ts';
import { setResponseHeader } from '../../shared/http/headers.ts';

export interface RateLimitOptions {
  redis: Redis;
  prefix: string;
  windowMs: number;
  /** Every principal's budgets per window unless `perPrincipal` names it (RATE_LIMIT_MAX, RATE_LIMIT_READ_MAX). */
  defaults: RateLimits;
  /** Principals with budgets of their own (API_KEYS entries with limits, the development key). */
  perPrincipal?: ReadonlyMap<string, RateLimits>;
}

/** Which budget a request draws on. */
export type Budget = 'reads' | 'writes';

/**
 * GET and HEAD read; every other method (POST, PUT, PATCH, DELETE — `DELETE /v1/sessions/current`
 * included) is a command and writes. OPTIONS (CORS preflight) is never counted.
 */
export function budgetOf(method: string): Budget {
  return method === 'GET' || method === 'HEAD' ? 'reads' : 'writes';
}

/**
 * Fixed window in one round trip: start the window if there is none, add the points, read what is
 * left of it (rate-limiter-flexible's RateLimiterRedis semantics, which this replaces). Each budget
 * of each key has its own counter, so a request still costs one script call.
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

/** One budget of one principal, with everything its responses say precomputed. */
interface Window {
  max: number;
  limit: string;
  policy: string;
  detail: string;
  budget: Budget;
}

/**
 * Fixed-window limits per API key (the authenticated principal, never a spoofable header), counted in
 * Redis so every API replica shares them: reads and writes have budgets (and counters) of their own,
 * so a producer that used its writes can still read its orders back. Sets `RateLimit-*` headers of
 * the budget the request drew on; 429 with `Retry-After` and a problem naming that budget when over.
 */
export function rateLimit(options: RateLimitOptions): MiddlewareHandler<ApiEnv> {
  const windowSeconds = Math.max(1, Math.round(options.windowMs / 1000));
  const consume = windowCounter(options.redis, windowSeconds * 1000);
  const keyPrefix: Record<Budget, string> = {
    reads: `${options.prefix}:ratelimit:reads:`,
    writes: `${options.prefix}:ratelimit:writes:`,
  };
  const window = (budget: Budget, max: number): Window => ({
    max,
    budget,
    limit: String(max),
    policy: `${max};w=${windowSeconds}`,
    detail:
      budget === 'writes'
        ? `write budget exhausted: this API key may send ${max} writes (POST, PUT, PATCH, DELETE) per ${windowSeconds} s; reads (GET, HEAD) have a budget of their own`
        : `read budget exhausted: this API key may send ${max} reads (GET, HEAD) per ${windowSeconds} s; writes have a budget of their own`,
  });
  const windows = (l: RateLimits): Record<Budget, Window> => ({
    reads: window('reads', l.reads),
    writes: window('writes', l.writes),
  });
  const defaults = windows(options.defaults);
  const perPrincipal = new Map([...(options.perPrincipal ?? [])].map(([id, l]) => [id, windows(l)]));
  return async (c, next) => {
    const method = c.req.method;
    if (method === 'OPTIONS') return next();
    const principal = c.get('principal');
    const budget = budgetOf(method);
    const w = (perPrincipal.get(principal) ?? defaults)[budget];
    let outcome: Outcome;
    try {
      outcome = await consume(keyPrefix[budget] + principal);
    } catch {
      throw new DependencyUnavailableError('redis');
    }
    const resetSeconds = Math.ceil(outcome.msBeforeNext / 1000);
    const remaining = String(Math.max(0, w.max - outcome.consumed));
    const reset = String(resetSeconds);
    if (outcome.consumed > w.max) {
      return problemResponse(
        c,
        problem(429, 'rate_limit.exceeded', w.detail, { budget, limit: w.max, windowSeconds }),
        {
          'ratelimit-limit': w.limit,
          'ratelimit-remaining': remaining,
          'ratelimit-reset': reset,
          'ratelimit-policy': w.policy,
          'retry-after': String(Math.max(1, resetSeconds)),
        },
      );
    }
    // On whatever response the route gives, errors included.
    setResponseHeader(c, 'ratelimit-limit', w.limit);
    setResponseHeader(c, 'ratelimit-remaining', remaining);
    setResponseHeader(c, 'ratelimit-reset', reset);
    setResponseHeader(c, 'ratelimit-policy', w.policy);
    await next();
  };
}
