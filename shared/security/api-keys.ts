import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';

export const SCOPES = ['orders:write', 'orders:read', 'scaling:read', 'admin'] as const;
export type Scope = (typeof SCOPES)[number];

/** A configured API key: only the SHA-256 of the secret is kept. */
export interface ApiKey {
  id: string;
  scopes: readonly Scope[];
  sha256: Buffer;
}

export interface Principal {
  id: string;
  scopes: readonly Scope[];
}

/** The key accepted in development when no keys are configured. */
export const DEV_KEY = 'dev';

export function sha256(secret: string): Buffer {
  return createHash('sha256').update(secret, 'utf8').digest();
}

/**
 * Parses `API_KEYS`: comma-separated entries `<id>:<scope>[+<scope>…]:<sha256 hex of the key>`, e.g.
 * `shop:orders:write+orders:read:9f86d0…`. Scopes: orders:write, orders:read, scaling:read, admin.
 * @throws {Error} naming the bad entry.
 */
export function parseApiKeys(raw: string): ApiKey[] {
  const entries = raw
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
  return entries.map((entry, i) => {
    const hashAt = entry.lastIndexOf(':');
    const idAt = entry.indexOf(':');
    const id = entry.slice(0, idAt);
    const scopes = entry.slice(idAt + 1, hashAt).split('+');
    const hex = entry.slice(hashAt + 1);
    if (idAt <= 0 || hashAt <= idAt || !/^[A-Za-z0-9._-]{1,64}$/.test(id)) {
      throw new Error(`API_KEYS entry ${i + 1}: expected <id>:<scopes>:<sha256 hex>`);
    }
    if (!/^[0-9a-f]{64}$/i.test(hex))
      throw new Error(`API_KEYS entry ${i + 1} (${id}): the hash must be 64 hex characters`);
    for (const s of scopes) {
      if (!(SCOPES as readonly string[]).includes(s))
        throw new Error(`API_KEYS entry ${i + 1} (${id}): unknown scope "${s}"`);
    }
    return { id, scopes: scopes as Scope[], sha256: Buffer.from(hex, 'hex') };
  });
}

/** Finds the key for a presented secret, comparing hashes in constant time against every key. */
export function authenticate(keys: readonly ApiKey[], presented: string): Principal | null {
  const digest = sha256(presented);
  let found: ApiKey | null = null;
  for (const key of keys) {
    // Check every key (no early exit) so timing does not reveal which key matched.
    if (timingSafeEqual(digest, key.sha256) && found === null) found = key;
  }
  return found ? { id: found.id, scopes: found.scopes } : null;
}

export function hasScope(principal: Principal, scope: Scope): boolean {
  return principal.scopes.includes('admin') || principal.scopes.includes(scope);
}

/** A new random key and its `API_KEYS` entry (for `npm run api-key`). */
export function generateApiKey(id: string, scopes: readonly Scope[]): { key: string; entry: string } {
  const key = `cvk_${randomBytes(24).toString('base64url')}`;
  return { key, entry: `${id}:${scopes.join('+')}:${sha256(key).toString('hex')}` };
}
