import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import type { Redis } from '../queue/redis.ts';
import type { SearchQuery } from '../search/query.ts';
import type { BulkActionKind } from './selection.ts';

/**
 * The dry run's confirmation token: an HMAC binding the action, the exact query and the count the
 * operator was shown, valid for a few minutes. The key is random, made once per deployment and kept in
 * Redis (`<prefix>:bulk:token-key`), so every API replica signs and checks alike and no configuration
 * holds it.
 */

export interface TokenBinding {
  action: BulkActionKind;
  query: SearchQuery;
  count: number;
}

export interface BulkTokens {
  sign(binding: TokenBinding): Promise<string>;
  /** Whether `token` was signed for exactly this binding and has not expired. */
  verify(token: string, binding: TokenBinding): Promise<boolean>;
}

export interface BulkTokensOptions {
  prefix: string;
  /** @defaultValue 10 minutes */
  ttlMs?: number;
  now?: () => number;
}

/** The query with its keys sorted and dates as ISO strings: one spelling per query. */
export function canonicalQuery(query: SearchQuery): string {
  const entries = Object.entries(query)
    .filter(([, v]) => v !== undefined)
    .map(([k, v]) => [k, v instanceof Date ? v.toISOString() : v] as const)
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  return JSON.stringify(entries);
}

export function createBulkTokens(redis: Redis, options: BulkTokensOptions): BulkTokens {
  const ttlMs = options.ttlMs ?? 10 * 60_000;
  const now = options.now ?? Date.now;
  const keyName = `${options.prefix}:bulk:token-key`;
  let key: Promise<Buffer> | undefined;
  const signingKey = () =>
    (key ??= (async () => {
      // First replica to ask makes it; the others read the same one.
      await redis.set(keyName, randomBytes(32).toString('base64'), 'NX');
      const stored = await redis.get(keyName);
      if (!stored) throw new Error(`${keyName} vanished`);
      return Buffer.from(stored, 'base64');
    })().catch((err: unknown) => {
      key = undefined;
      throw err;
    }));
  const mac = async (expiresAt: number, b: TokenBinding) =>
    createHmac('sha256', await signingKey())
      .update(JSON.stringify([expiresAt, b.action, canonicalQuery(b.query), b.count]))
      .digest();

  return {
    async sign(binding) {
      const expiresAt = now() + ttlMs;
      return `${expiresAt.toString(36)}.${(await mac(expiresAt, binding)).toString('base64url')}`;
    },
    async verify(token, binding) {
      const [exp, sig] = token.split('.');
      if (!exp || !sig) return false;
      const expiresAt = Number.parseInt(exp, 36);
      if (!Number.isSafeInteger(expiresAt) || expiresAt < now()) return false;
      const expected = await mac(expiresAt, binding);
      const given = Buffer.from(sig, 'base64url');
      return given.length === expected.length && timingSafeEqual(given, expected);
    },
  };
}
