import type { Redis } from '../../shared/queue/redis.ts';

/** Why a login attempt was refused. */
export type LoginFailureReason = 'bad_credentials' | 'rate_limited';

/** What a streak of failed logins from one address added up to. */
export interface LoginFailureStreak {
  /** Failed attempts in the streak, the first included. */
  count: number;
  badCredentials: number;
  rateLimited: number;
  /** The user name the streak began with. */
  firstUser: string;
  /** Attempts per user name, for the first {@link MAX_USERS} names tried. */
  users: Record<string, number>;
  /** Attempts with user names past those. */
  otherUsers: number;
  since: Date;
  until: Date;
}

/** One failed attempt counted: is it the streak's first (audit it), and did it end an older streak? */
export interface LoginFailureOutcome {
  first: boolean;
  /** The previous streak of this address, when this attempt came after its window. */
  ended: LoginFailureStreak | null;
}

/**
 * Streaks of failed dashboard logins per client address, counted in Redis (shared by every replica)
 * so that the audit log gets the first failure of a streak and one summary, never a row per attempt.
 */
export interface LoginFailures {
  /** Counts one failed attempt. @throws when Redis cannot answer. */
  fail(ip: string, user: string, reason: LoginFailureReason): Promise<LoginFailureOutcome>;
  /** Ends the address's streak (a successful login) and returns it, if it had one. @throws when Redis cannot answer. */
  end(ip: string): Promise<LoginFailureStreak | null>;
}

export interface LoginFailuresOptions {
  prefix: string;
  /** A streak lasts this long from its first failure; the next failure after it starts a new one. */
  windowSeconds: number;
  /** How long an idle streak's counts are kept for a summary at the address's next attempt. */
  retainSeconds: number;
}

/** User names counted one by one in a streak; further names are counted together. */
export const MAX_USERS = 10;

// One hash per address. A failure past the window hands the old streak back and starts a new one,
// atomically, so two replicas never both see a "first" failure or both summarize one streak.
const FAIL = `
local k = KEYS[1]
local now = tonumber(ARGV[1])
local ended = {}
local since = redis.call('HGET', k, 'since')
if since and now - tonumber(since) >= tonumber(ARGV[2]) then
  ended = redis.call('HGETALL', k)
  redis.call('DEL', k)
end
local count = redis.call('HINCRBY', k, 'count', 1)
if count == 1 then redis.call('HSET', k, 'since', ARGV[1], 'first', ARGV[5]) end
redis.call('HSET', k, 'until', ARGV[1])
redis.call('HINCRBY', k, 'r:' .. ARGV[4], 1)
local uf = 'u:' .. ARGV[5]
if redis.call('HEXISTS', k, uf) == 1 or tonumber(redis.call('HGET', k, 'users') or '0') < tonumber(ARGV[6]) then
  if redis.call('HINCRBY', k, uf, 1) == 1 then redis.call('HINCRBY', k, 'users', 1) end
else
  redis.call('HINCRBY', k, 'other', 1)
end
redis.call('EXPIRE', k, tonumber(ARGV[3]))
return {count, ended}
`;

const END = `
local streak = redis.call('HGETALL', KEYS[1])
redis.call('DEL', KEYS[1])
return streak
`;

function streakOf(flat: unknown): LoginFailureStreak | null {
  if (!Array.isArray(flat) || flat.length === 0) return null;
  const fields = new Map<string, string>();
  for (let i = 0; i + 1 < flat.length; i += 2) fields.set(String(flat[i]), String(flat[i + 1]));
  const num = (name: string) => Number(fields.get(name) ?? 0);
  const users: Record<string, number> = {};
  for (const [name, value] of fields) if (name.startsWith('u:')) users[name.slice(2)] = Number(value);
  return {
    count: num('count'),
    badCredentials: num('r:bad_credentials'),
    rateLimited: num('r:rate_limited'),
    firstUser: fields.get('first') ?? '',
    users,
    otherUsers: num('other'),
    since: new Date(num('since')),
    until: new Date(num('until')),
  };
}

/** @example const failures = createLoginFailures(redis, { prefix, windowSeconds: 60, retainSeconds: 3600 }); */
export function createLoginFailures(redis: Redis, options: LoginFailuresOptions): LoginFailures {
  const keyOf = (ip: string) => `${options.prefix}:dashboard:login-failures:${ip.slice(0, 100)}`;
  return {
    async fail(ip, user, reason) {
      const reply = (await redis.eval(
        FAIL,
        1,
        keyOf(ip),
        Date.now(),
        options.windowSeconds * 1_000,
        options.retainSeconds,
        reason,
        // Case-folded and bounded like the limiter's keys: "Admin" and "admin" are one name.
        user.toLowerCase().slice(0, 100),
        MAX_USERS,
      )) as [number, unknown];
      return { first: Number(reply[0]) === 1, ended: streakOf(reply[1]) };
    },
    async end(ip) {
      return streakOf(await redis.eval(END, 1, keyOf(ip)));
    },
  };
}
