import { createHash, randomBytes } from 'node:crypto';
import { z } from 'zod';
import type { Redis } from '../../shared/queue/redis.ts';

/** An operator's dashboard session, as stored in Redis. */
export const DashboardSessionSchema = z.object({
  user: z.string(),
  role: z.enum(['admin', 'viewer']),
  /** Per-session anti-CSRF token, echoed by every form that changes something. */
  csrf: z.string().min(32),
  createdAt: z.iso.datetime(),
});
export type DashboardSession = z.infer<typeof DashboardSessionSchema>;

export interface DashboardSessions {
  /** A new session; the token goes in the cookie and is never stored as such. */
  create(
    data: Pick<DashboardSession, 'user' | 'role'>,
  ): Promise<{ token: string; session: DashboardSession }>;
  get(token: string): Promise<DashboardSession | null>;
  destroy(token: string): Promise<void>;
  /** The Redis key of a token, for tests and operators. */
  keyOf(token: string): string;
  readonly ttlSeconds: number;
}

const TOKEN_RE = /^[A-Za-z0-9_-]{43}$/;

/**
 * Dashboard sessions in Redis with an absolute TTL (`SESSION_TTL_SECONDS`), so any replica serves any
 * session and nothing lives in process memory. The key is the SHA-256 of the cookie token: a copy of
 * Redis does not hand out live sessions.
 */
export function createDashboardSessions(
  redis: Redis,
  options: { prefix: string; ttlSeconds: number },
): DashboardSessions {
  const keyOf = (token: string) =>
    `${options.prefix}:dashboard:session:${createHash('sha256').update(token).digest('base64url')}`;
  return {
    ttlSeconds: options.ttlSeconds,
    keyOf,
    async create(data) {
      const token = randomBytes(32).toString('base64url');
      const session: DashboardSession = {
        ...data,
        csrf: randomBytes(32).toString('base64url'),
        createdAt: new Date().toISOString(),
      };
      await redis.set(keyOf(token), JSON.stringify(session), 'EX', options.ttlSeconds);
      return { token, session };
    },
    async get(token) {
      if (!TOKEN_RE.test(token)) return null; // checked before it becomes part of a Redis key
      const raw = await redis.get(keyOf(token));
      if (raw === null) return null;
      try {
        const parsed = DashboardSessionSchema.safeParse(JSON.parse(raw));
        return parsed.success ? parsed.data : null;
      } catch {
        return null;
      }
    },
    async destroy(token) {
      if (TOKEN_RE.test(token)) await redis.del(keyOf(token));
    },
  };
}
