import { createHash } from 'node:crypto';
import type { Redis } from '../queue/redis.ts';
import { IdempotencyKeyInFlightError, IdempotencyKeyReusedError } from '../errors/domain.ts';

export interface StoredResponse {
  status: number;
  body: unknown;
  headers: Record<string, string>;
}

type Entry =
  | { state: 'pending'; fingerprint: string }
  | { state: 'done'; fingerprint: string; response: StoredResponse };

export type Begin = { kind: 'new' } | { kind: 'replay'; response: StoredResponse };

export interface IdempotencyStore {
  /**
   * Claims `key` for a request. New → the caller proceeds and must `complete` or `abort`.
   * @throws {IdempotencyKeyReusedError} same key, different body (422).
   * @throws {IdempotencyKeyInFlightError} same key still being processed (409).
   */
  begin(scope: string, key: string, fingerprint: string): Promise<Begin>;
  complete(scope: string, key: string, fingerprint: string, response: StoredResponse): Promise<void>;
  /** Releases a claim whose request failed, so the client can retry with the same key. */
  abort(scope: string, key: string): Promise<void>;
}

export interface IdempotencyOptions {
  prefix: string;
  ttlSeconds: number;
  lockSeconds: number;
}

/** Deletes the key only while it is still a pending claim (never a stored response). */
const ABORT_SCRIPT = `local v = redis.call('GET', KEYS[1])
if v and string.find(v, '"state":"pending"', 1, true) then return redis.call('DEL', KEYS[1]) end
return 0`;

function canonical(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonical).join(',')}]`;
  if (value && typeof value === 'object') {
    return `{${Object.keys(value)
      .sort()
      .map((k) => `${JSON.stringify(k)}:${canonical((value as Record<string, unknown>)[k])}`)
      .join(',')}}`;
  }
  return JSON.stringify(value) ?? 'null';
}

/** The request's identity: method, path and body (key order and whitespace do not matter). */
export function fingerprint(method: string, path: string, body: unknown): string {
  return createHash('sha256')
    .update(`${method} ${path}\n${canonical(body)}`)
    .digest('hex');
}

/** Stripe-style idempotency keys in Redis: one claim per key, responses replayed for the TTL. */
export function createIdempotencyStore(redis: Redis, options: IdempotencyOptions): IdempotencyStore {
  const keyOf = (scope: string, key: string) =>
    `${options.prefix}:idem:${createHash('sha256').update(`${scope}\n${key}`).digest('hex')}`;

  return {
    async begin(scope, key, fp) {
      const k = keyOf(scope, key);
      for (let i = 0; i < 3; i++) {
        const pending: Entry = { state: 'pending', fingerprint: fp };
        const claimed = await redis.set(k, JSON.stringify(pending), 'EX', options.lockSeconds, 'NX');
        if (claimed === 'OK') return { kind: 'new' };
        const raw = await redis.get(k);
        if (raw === null) continue; // expired between SET and GET: claim again
        const entry = JSON.parse(raw) as Entry;
        if (entry.fingerprint !== fp) throw new IdempotencyKeyReusedError();
        if (entry.state === 'pending') throw new IdempotencyKeyInFlightError();
        return { kind: 'replay', response: entry.response };
      }
      throw new IdempotencyKeyInFlightError();
    },
    async complete(scope, key, fp, response) {
      const entry: Entry = { state: 'done', fingerprint: fp, response };
      await redis.set(keyOf(scope, key), JSON.stringify(entry), 'EX', options.ttlSeconds);
    },
    async abort(scope, key) {
      await redis.eval(ABORT_SCRIPT, 1, keyOf(scope, key));
    },
  };
}
