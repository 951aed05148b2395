import { randomBytes } from 'node:crypto';
import type { Redis } from '../queue/redis.ts';
import { z } from 'zod';

/** What a session remembers: who, and what they may do. Lives in Redis only (any replica serves it). */
export const SessionSchema = z.object({
  principal: z.string(),
  scopes: z.array(z.string()),
  role: z.string().optional(),
  createdAt: z.string(),
});
export type Session = z.infer<typeof SessionSchema>;

export interface SessionStore {
  create(data: Omit<Session, 'createdAt'>): Promise<{ id: string; expiresInSeconds: number }>;
  get(id: string): Promise<Session | null>;
  destroy(id: string): Promise<void>;
}

const ID_RE = /^[A-Za-z0-9_-]{32,64}$/;

/** Sessions in Redis with a TTL (the brief's StatelessAuthService), never in process memory. */
export function createSessionStore(
  redis: Redis,
  options: { prefix: string; ttlSeconds: number },
): SessionStore {
  const key = (id: string) => `${options.prefix}:session:${id}`;
  return {
    async create(data) {
      const id = randomBytes(32).toString('base64url');
      const session: Session = { ...data, createdAt: new Date().toISOString() };
      await redis.set(key(id), JSON.stringify(session), 'EX', options.ttlSeconds);
      return { id, expiresInSeconds: options.ttlSeconds };
    },
    async get(id) {
      if (!ID_RE.test(id)) return null; // validated before it becomes a Redis key
      const raw = await redis.get(key(id));
      if (raw === null) return null;
      const parsed = SessionSchema.safeParse(JSON.parse(raw));
      return parsed.success ? parsed.data : null;
    },
    async destroy(id) {
      if (ID_RE.test(id)) await redis.del(key(id));
    },
  };
}
