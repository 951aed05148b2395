import { createHash, randomBytes } from 'node:crypto';
import { z } from 'zod';
import type { Redis } from '../queue/redis.ts';

/**
 * What an API session remembers: who opened it and with which key ({@link credentialOf}) — not the
 * key's scopes. Every request that uses the session looks the key up among the keys configured now
 * and takes its scopes from there, so removing a key from `API_KEYS` (or shrinking its scopes) takes
 * effect on its sessions as soon as the API replicas restart.
 */
export const ApiSessionSchema = z.object({
  principal: z.string(),
  /** {@link credentialOf} the key that opened the session (or the session that opened it). */
  credential: z.string().regex(/^[0-9a-f]{32}$/),
  createdAt: z.iso.datetime(),
});
export type ApiSession = z.infer<typeof ApiSessionSchema>;

export interface ApiSessionStore {
  /** A new session; its id is returned once and never stored as such (Redis holds its SHA-256). */
  create(data: Omit<ApiSession, 'createdAt'>): Promise<{ id: string; expiresInSeconds: number }>;
  get(id: string): Promise<ApiSession | null>;
  destroy(id: string): Promise<void>;
  /** The Redis key of a session id, for tests and operators. */
  keyOf(id: string): string;
  readonly ttlSeconds: number;
}

/** The ids this store hands out: 32 random bytes, base64url (43 characters). */
const ID_RE = /^[A-Za-z0-9_-]{43}$/;

/**
 * The name a session gives the key that opened it: derived from the key's SHA-256 (the hash
 * `API_KEYS` holds), never the key itself, and not the configured hash either — a copy of Redis
 * tells nobody which `API_KEYS` entry is which.
 */
export function credentialOf(keySha256: Buffer): string {
  return createHash('sha256')
    .update('conveyor api session credential\0')
    .update(keySha256)
    .digest('hex')
    .slice(0, 32);
}

/**
 * API sessions in Redis with an absolute TTL, so any replica serves any session and logout is
 * immediate everywhere. Like the console's sessions (dashboard/auth/sessions.ts), the Redis key is the
 * SHA-256 of the session id: Redis, a replica or a backup holds no usable bearer token. Keys live under
 * `<prefix>:api-session:`; ids issued before hashing (`<prefix>:session:<id>`) are not read.
 */
export function createApiSessionStore(
  redis: Redis,
  options: { prefix: string; ttlSeconds: number },
): ApiSessionStore {
  const keyOf = (id: string) =>
    `${options.prefix}:api-session:${createHash('sha256').update(id).digest('base64url')}`;
  return {
    ttlSeconds: options.ttlSeconds,
    keyOf,
    async create(data) {
      const id = randomBytes(32).toString('base64url');
      const session: ApiSession = { ...data, createdAt: new Date().toISOString() };
      await redis.set(keyOf(id), JSON.stringify(session), 'EX', options.ttlSeconds);
      return { id, expiresInSeconds: options.ttlSeconds };
    },
    async get(id) {
      if (!ID_RE.test(id)) return null; // checked before it is hashed into a Redis key
      const raw = await redis.get(keyOf(id));
      if (raw === null) return null;
      try {
        const parsed = ApiSessionSchema.safeParse(JSON.parse(raw));
        return parsed.success ? parsed.data : null;
      } catch {
        return null;
      }
    },
    async destroy(id) {
      if (ID_RE.test(id)) await redis.del(keyOf(id));
    },
  };
}
