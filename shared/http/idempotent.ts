import { createHash } from 'node:crypto';
import type { Context } from 'hono';
import { ValidationError } from '../errors/domain.ts';
import type { ApiEnv } from './context.ts';
import { fingerprint, type IdempotencyStore, type StoredResponse } from './idempotency.ts';
import { requestLog } from './log.ts';
import { respond } from './headers.ts';
import { ProblemSchema } from './schemas.ts';
import type { RedisCall } from './redis-call.ts';

const IDEMPOTENCY_HEADER = 'idempotency-key';
const visibleAscii = /^[\x21-\x7e]+$/;

const idempotencyKeyDescription =
  'Stripe-style idempotency key: 1-255 visible ASCII characters, remembered 24 h';
/**
 * The Idempotency-Key header of a route run under {@link createIdempotent}, documented as a plain
 * OpenAPI parameter rather than a `request.headers` schema: that would make every POST collect all its
 * headers into an object for zod, only to learn an optional string is a string. `idempotent()`
 * validates the key itself (422 problem if invalid).
 */
export const IdempotencyKeyParameter = {
  name: IDEMPOTENCY_HEADER,
  in: 'header',
  required: false,
  description: idempotencyKeyDescription,
  schema: { type: 'string', description: idempotencyKeyDescription },
} as const;

const problemContent = { 'application/problem+json': { schema: ProblemSchema } };

/** The OpenAPI responses an idempotent route adds: 409 and 422. */
export const idempotencyResponses = {
  409: { description: 'Same Idempotency-Key in flight', content: problemContent },
  422: { description: 'Idempotency-Key reused with another body', content: problemContent },
};

/** An id derived from the idempotency claim: a retry can never enqueue a second job. */
export function derivedId(...parts: string[]): string {
  const h = createHash('sha256').update(parts.join('\n')).digest('hex');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-8${h.slice(13, 16)}-${((parseInt(h[16]!, 16) & 0x3) | 0x8).toString(16)}${h.slice(17, 20)}-${h.slice(20, 32)}`;
}

/** The answer of idempotent work; `remember: false` (a partial answer) releases the key instead of storing it. */
export type IdempotentAnswer = StoredResponse & { remember?: boolean };

/**
 * Runs `work` under the request's Idempotency-Key (if any): replay, 422, 409 or a fresh claim.
 * `work` gets a seed for {@link derivedId} (`null` without a key) and answers the JSON response.
 */
export type Idempotent = (
  c: Context<ApiEnv>,
  body: unknown,
  work: (idSeed: string | null) => Promise<IdempotentAnswer>,
) => Promise<Response>;

/**
 * Stripe-style Idempotency-Key handling for command routes, scoped per tenant (the API key, or the
 * sub-tenant it posts for: two customers of one platform may use the same key): the same key with
 * the same body replays the first response (`idempotent-replayed: true`), with another body → 422,
 * while the first is in flight → 409. Knows nothing of what the work does.
 * @example const idempotent = createIdempotent({ store: deps.idempotency, redisCall }); return idempotent(c, body, async (seed) => ({ status: 202, body: {}, headers: {} }));
 */
export function createIdempotent(deps: { store: IdempotencyStore; redisCall: RedisCall }): Idempotent {
  const { store, redisCall } = deps;
  return async function idempotent(c, body, work) {
    const key = c.req.header(IDEMPOTENCY_HEADER);
    if (key !== undefined && (key.length === 0 || key.length > 255 || !visibleAscii.test(key))) {
      throw new ValidationError('invalid Idempotency-Key', [
        { path: 'Idempotency-Key', message: '1-255 visible ASCII characters' },
      ]);
    }
    // A key's own tenant is its id, so keys without sub-tenants keep their scope (and derived ids).
    const scope = c.get('tenant')?.id ?? c.get('principal');
    let response: IdempotentAnswer;
    if (key === undefined) {
      response = await work(null);
    } else {
      const fp = fingerprint(c.req.method, c.req.path, body);
      const claim = await redisCall(() => store.begin(scope, key, fp));
      if (claim.kind === 'replay') {
        return respond(c, JSON.stringify(claim.response.body), claim.response.status, {
          ...claim.response.headers,
          'content-type': 'application/json',
          'idempotent-replayed': 'true',
        });
      }
      try {
        response = await work(`${scope}\n${key}\n${fp}`);
      } catch (err) {
        await store.abort(scope, key).catch(() => undefined);
        throw err;
      }
      const { remember = true, ...stored } = response;
      // The work is done (e.g. a job enqueued): if storing the response fails, a retry still maps to the
      // same derived ids.
      const done = remember ? store.complete(scope, key, fp, stored) : store.abort(scope, key);
      await done.catch((err: unknown) => {
        requestLog(c).warn({ err }, 'could not store idempotent response');
      });
    }
    return respond(c, JSON.stringify(response.body), response.status, {
      ...response.headers,
      'content-type': 'application/json',
    });
  };
}
