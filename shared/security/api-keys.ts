import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { z } from 'zod';
import type { ModuleDefinition } from '../modules/module.ts';

/**
 * A permission an API key holds: one of the core's ({@link CORE_SCOPES}) or one a registered module
 * declares for its routes (`ModuleDefinition.scopes`, e.g. `orders:write`).
 */
export type Scope = string;

/** The core's own scopes: `scaling:read` (KEDA's `/v1/scaling/{queue}`) and `admin` (everything). */
export const CORE_SCOPES: readonly Scope[] = ['scaling:read', 'admin'];

/** What a module may name a scope: `<resource>:<access>`, lowercase letters, digits and `-`. */
const MODULE_SCOPE = /^[a-z][a-z0-9-]{0,39}:[a-z][a-z0-9-]{0,39}$/;

/**
 * Every scope a key may hold: the core's, then each of `modules`' (the registry's) in order, once each.
 * @throws {Error} naming a module whose scope is not `<resource>:<access>` or is one of the core's.
 * @example const scopes = knownScopes(MODULES);
 */
export function knownScopes(modules: readonly Pick<ModuleDefinition, 'name' | 'scopes'>[]): readonly Scope[] {
  const out = new Set<Scope>(CORE_SCOPES);
  for (const m of modules) {
    for (const scope of [m.scopes.write, m.scopes.read]) {
      if (!MODULE_SCOPE.test(scope) || CORE_SCOPES.includes(scope))
        throw new Error(
          `module ${m.name} declares the scope ${JSON.stringify(scope)}: use <resource>:<access> (lowercase letters, digits, "-"), not a core scope`,
        );
      out.add(scope);
    }
  }
  return [...out];
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

/** Requests per rate-limit window, each budget counted on its own. */
export interface RateLimits {
  /** Commands: POST, PUT, PATCH, DELETE. */
  writes: number;
  /** Queries: GET, HEAD. */
  reads: number;
}

/**
 * What the development key `dev` (no API_KEYS, NODE_ENV not production) gets per window, or
 * RATE_LIMIT_MAX / RATE_LIMIT_READ_MAX when those are higher: 100× the production write default, so a
 * newcomer running the README or a script that posts a few thousand orders (or polls them back) never
 * meets a 429, yet a runaway loop on a laptop still does, and every response carries the same
 * RateLimit-* headers a production client will see.
 */
export const DEV_KEY_LIMITS: RateLimits = Object.freeze({ writes: 10_000, reads: 10_000 });

/** A configured API key: only the SHA-256 of the secret is kept. */
export interface ApiKey {
  id: string;
  scopes: readonly Scope[];
  sha256: Buffer;
  /** The entry's own budgets; a budget not given is RATE_LIMIT_MAX / RATE_LIMIT_READ_MAX. */
  limits?: Partial<RateLimits>;
}

const MAX_BUDGET = 1_000_000_000;
const HEX = /^[0-9a-f]{64}$/i;
/** One side of `<writes>/<reads>`: empty keeps the default. */
function budgetSchema(name: 'writes' | 'reads') {
  const error = `the ${name} limit must be a whole number from 1 to ${MAX_BUDGET}`;
  return z
    .string()
    .transform((v) => (v === '' ? undefined : Number(v)))
    .pipe(z.number().int({ error }).min(1, { error }).max(MAX_BUDGET, { error }).optional());
}

const LimitsSchema = z
  .string()
  .regex(/^\d*\/\d*$/, 'the limits must be <writes>/<reads>, e.g. 5000/20000')
  .transform((s) => {
    const [writes = '', reads = ''] = s.split('/');
    return { writes, reads };
  })
  .pipe(z.object({ writes: budgetSchema('writes'), reads: budgetSchema('reads') }))
  .refine((l) => l.writes !== undefined || l.reads !== undefined, {
    error: 'the limits must name writes, reads or both, e.g. 5000/20000 or /20000',
  })
  .transform((l): Partial<RateLimits> => ({
    ...(l.writes === undefined ? {} : { writes: l.writes }),
    ...(l.reads === undefined ? {} : { reads: l.reads }),
  }));

/** One `API_KEYS` entry, split into its parts (see {@link parseApiKeys}), with the scopes it may name. */
function entrySchema(scopes: readonly Scope[]) {
  return z.object({
    id: z.string().regex(/^[A-Za-z0-9._-]{1,64}$/, 'the id must be 1-64 letters, digits, ".", "_" or "-"'),
    hex: z.string().regex(HEX, 'the hash must be 64 hex characters (the SHA-256 of the key)'),
    scopes: z.array(
      z.string().refine((s) => scopes.includes(s), {
        error: (issue) => `unknown scope "${String(issue.input)}" (scopes: ${scopes.join(', ')})`,
      }),
    ),
    limits: LimitsSchema.optional(),
  });
}

const ENTRY_SYNTAX = '<id>:<scope>[+<scope>…]:<sha256 hex>[:<writes>/<reads>]';

/**
 * Parses `API_KEYS`: comma-separated entries `<id>:<scope>[+<scope>…]:<sha256 hex of the key>`, each
 * optionally followed by its own rate limits `:<writes>/<reads>` (per RATE_LIMIT_WINDOW_MS; leave a
 * side empty to keep its default), e.g. `shop:orders:write+orders:read:9f86d0…:5000/20000` or
 * `reports:orders:read:3a7bd3…:/50000`. Scopes contain `:` themselves, so the id ends at the first
 * `:`, the hash is the last part that is not limits (hex never contains `/`).
 * `scopes` are those an entry may name: {@link knownScopes} of the registered modules (`scaling:read`,
 * `admin`, and each module's, e.g. `orders:write`, `orders:read`).
 * @throws {Error} naming the bad entry (its position and id).
 */
export function parseApiKeys(raw: string, scopes: readonly Scope[]): ApiKey[] {
  const EntrySchema = entrySchema(scopes);
  const entries = raw
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
  const keys = entries.map((entry, i): ApiKey => {
    const parts = entry.split(':');
    // Limits follow the hash: a last part with a "/", or anything after a 64-hex part.
    const [beforeLast = '', last = ''] = parts.slice(-2);
    const hasLimits = parts.length > 3 && (last.includes('/') || (HEX.test(beforeLast) && !HEX.test(last)));
    const limits = hasLimits ? parts.pop() : undefined;
    const [id = '', ...rest] = parts;
    const hex = rest.pop();
    if (id === '' || hex === undefined || rest.length === 0) {
      throw new Error(`API_KEYS entry ${i + 1}: expected ${ENTRY_SYNTAX}`);
    }
    const parsed = EntrySchema.safeParse({ id, scopes: rest.join(':').split('+'), hex, limits });
    if (!parsed.success) {
      const label = /^[A-Za-z0-9._-]{1,64}$/.test(id) ? ` (${id})` : '';
      throw new Error(`API_KEYS entry ${i + 1}${label}: ${parsed.error.issues[0]!.message}`);
    }
    const key: ApiKey = {
      id,
      scopes: parsed.data.scopes,
      sha256: Buffer.from(parsed.data.hex, 'hex'),
    };
    if (parsed.data.limits) key.limits = parsed.data.limits;
    return key;
  });
  // One id is one principal and one budget: entries of one id (a key being rotated) must agree on it.
  const limitsOf = new Map<string, string>();
  keys.forEach((k, i) => {
    const mine = JSON.stringify(k.limits ?? {});
    const theirs = limitsOf.get(k.id);
    if (theirs !== undefined && theirs !== mine) {
      throw new Error(`API_KEYS entry ${i + 1} (${k.id}): another entry of this id has other limits`);
    }
    limitsOf.set(k.id, mine);
  });
  return keys;
}

/** `<writes>/<reads>` as an entry carries it; a side not set is left empty. */
export function formatLimits(limits: Partial<RateLimits>): string {
  return `${limits.writes ?? ''}/${limits.reads ?? ''}`;
}

/**
 * The budgets of every principal with budgets of its own: the keys whose entries carry limits, and
 * the development key when it is accepted. Everyone else gets `defaults`.
 */
export function limitsByPrincipal(
  keys: readonly ApiKey[],
  defaults: RateLimits,
  devKeyAccepted: boolean,
): Map<string, RateLimits> {
  const out = new Map<string, RateLimits>();
  for (const k of keys) if (k.limits) out.set(k.id, { ...defaults, ...k.limits });
  if (devKeyAccepted) {
    out.set(DEV_KEY, {
      writes: Math.max(DEV_KEY_LIMITS.writes, defaults.writes),
      reads: Math.max(DEV_KEY_LIMITS.reads, defaults.reads),
    });
  }
  return out;
}

/** Finds the key for a presented secret, comparing hashes in constant time against every key. */
export function authenticate(keys: readonly ApiKey[], presented: string): Principal | null {
  const found = keyWithDigest(keys, sha256(presented));
  return found ? { id: found.id, scopes: found.scopes } : null;
}

/**
 * The first of `keys` whose hash is `digest` (a presented secret's {@link sha256}), comparing in
 * constant time against every key; for a caller that needs the digest itself too (hashing once).
 */
export function keyWithDigest(keys: readonly ApiKey[], digest: Buffer): ApiKey | null {
  let found: ApiKey | null = null;
  for (const key of keys) {
    // Check every key (no early exit) so timing does not reveal which key matched.
    if (timingSafeEqual(digest, key.sha256) && found === null) found = key;
  }
  return found;
}

export function hasScope(principal: Principal, scope: Scope): boolean {
  return principal.scopes.includes('admin') || principal.scopes.includes(scope);
}

/** A new random key and its `API_KEYS` entry (for `npm run api-key`), with the key's own limits if given. */
export function generateApiKey(
  id: string,
  scopes: readonly Scope[],
  limits?: Partial<RateLimits>,
): { key: string; entry: string } {
  const key = `cvk_${randomBytes(24).toString('base64url')}`;
  const entry = `${id}:${scopes.join('+')}:${sha256(key).toString('hex')}`;
  return { key, entry: limits ? `${entry}:${formatLimits(limits)}` : entry };
}
