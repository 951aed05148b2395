import { z } from 'zod';

/**
 * Who a command is for, for fairness: by default the API key that accepted it; a key allowed
 * sub-tenants may name one (`Conveyor-Tenant: acme` → tenant `shop/acme`). Each tenant gets its own
 * turn in its module's queue, its own in-flight limit and its own backlog quota.
 */
export interface Tenant {
  /** `<key id>` or `<key id>/<sub-tenant>`. */
  id: string;
  policy: TenantPolicy;
}

/** A tenant's share and bounds (`TENANTS`, defaults `TENANT_*`). */
export interface TenantPolicy {
  /** Its share of the workers while it and others have commands waiting: weight 3 gets 3 turns to 1's one. */
  weight: number;
  /** Most of its commands handed to the workers and not yet decided, across every replica; 0 = no limit. */
  maxInFlight: number;
  /** Most of its commands waiting for their turn; past it the API answers 429. 0 = no quota. */
  backlogQuota: number;
  /** Whether its key may name sub-tenants (header `Conveyor-Tenant`), each then a tenant of its own. */
  subTenants: boolean;
}

/** What a sub-tenant, or a key id, may be called: the same characters as an API key id. */
export const TENANT_PART = /^[A-Za-z0-9._-]{1,64}$/;

/** The most a weight can be: a turn of weight w takes w commands in a row. */
export const MAX_WEIGHT = 1_000;

const count = (what: string) =>
  z.coerce
    .number({ error: `${what} must be a whole number` })
    .int({ error: `${what} must be a whole number` })
    .min(0, { error: `${what} must be 0 or more` });

const SettingSchema = z.discriminatedUnion('name', [
  z.object({
    name: z.literal('weight'),
    value: z.coerce
      .number({ error: 'weight must be a whole number' })
      .int({ error: 'weight must be a whole number' })
      .min(1, { error: 'weight must be 1 or more' })
      .max(MAX_WEIGHT, { error: `weight must be at most ${MAX_WEIGHT}` }),
  }),
  z.object({ name: z.literal('max_in_flight'), value: count('max_in_flight') }),
  z.object({ name: z.literal('backlog_quota'), value: count('backlog_quota') }),
  z.object({
    name: z.literal('sub_tenants'),
    value: z.enum(['on', 'off'], { error: 'sub_tenants must be on or off' }).transform((v) => v === 'on'),
  }),
]);

const SETTING_NAMES = ['weight', 'max_in_flight', 'backlog_quota', 'sub_tenants'];

/**
 * Parses `TENANTS`: comma-separated `<tenant>:<setting>=<value>[;<setting>=<value>…]`, settings
 * `weight`, `max_in_flight`, `backlog_quota`, `sub_tenants` (on/off); a tenant is a key id or
 * `<key id>/<sub-tenant>`. What an entry leaves out comes from the defaults (`TENANT_*`); a sub-tenant with
 * no entry of its own gets its key's.
 * @example parseTenantPolicies('shop:weight=3;max_in_flight=20;sub_tenants=on,shop/acme:weight=1')
 * @throws {Error} naming the bad entry.
 */
export function parseTenantPolicies(raw: string): ReadonlyMap<string, Partial<TenantPolicy>> {
  const out = new Map<string, Partial<TenantPolicy>>();
  raw
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean)
    .forEach((entry, i) => {
      const at = entry.indexOf(':');
      const id = at === -1 ? entry : entry.slice(0, at);
      const parts = id.split('/');
      if (parts.length > 2 || !parts.every((p) => TENANT_PART.test(p)))
        throw new Error(
          `TENANTS entry ${i + 1}: the tenant must be <key id> or <key id>/<sub-tenant> (1-64 letters, digits, ".", "_" or "-" each)`,
        );
      if (out.has(id)) throw new Error(`TENANTS entry ${i + 1} (${id}): this tenant has another entry`);
      const policy: Partial<TenantPolicy> = {};
      const settings = at === -1 ? [] : entry.slice(at + 1).split(';');
      for (const setting of settings.filter(Boolean)) {
        const [name = '', value = '', ...rest] = setting.split('=');
        if (!SETTING_NAMES.includes(name) || rest.length > 0)
          throw new Error(
            `TENANTS entry ${i + 1} (${id}): "${setting}" is not <setting>=<value> with a setting of ${SETTING_NAMES.join(', ')}`,
          );
        const parsed = SettingSchema.safeParse({ name, value });
        if (!parsed.success)
          throw new Error(`TENANTS entry ${i + 1} (${id}): ${parsed.error.issues[0]!.message}`);
        const s = parsed.data;
        if (s.name === 'weight') policy.weight = s.value;
        else if (s.name === 'max_in_flight') policy.maxInFlight = s.value;
        else if (s.name === 'backlog_quota') policy.backlogQuota = s.value;
        else policy.subTenants = s.value;
      }
      if (parts.length === 2 && policy.subTenants !== undefined)
        throw new Error(`TENANTS entry ${i + 1} (${id}): only a key's own entry may set sub_tenants`);
      out.set(id, policy);
    });
  return out;
}

/** Resolves tenants and their policies from the parsed `TENANTS` and the defaults. */
export interface TenantDirectory {
  /** The policy of `id` (`<key>` or `<key>/<sub>`): its entry, else its key's, else the defaults. */
  policyOf(id: string): TenantPolicy;
  /**
   * The tenant a request is for: its key's, or with a `Conveyor-Tenant` header the sub-tenant it names.
   * @returns an error message (answered 400 or 403) instead when the header is malformed or not allowed.
   */
  resolve(keyId: string, header: string | undefined): Tenant | { error: string; status: 400 | 403 };
}

/** The {@link TenantDirectory} of `policies` (from {@link parseTenantPolicies}) over `defaults`. */
export function tenantDirectory(
  policies: ReadonlyMap<string, Partial<TenantPolicy>>,
  defaults: TenantPolicy,
): TenantDirectory {
  const cache = new Map<string, TenantPolicy>();
  const policyOf = (id: string): TenantPolicy => {
    let policy = cache.get(id);
    if (policy) return policy;
    const key = id.split('/')[0]!;
    const keys = policies.get(key) ?? {};
    // A sub-tenant starts from its key's settings; its own entry overrides them. It names none below it.
    policy =
      id === key
        ? { ...defaults, ...keys }
        : { ...defaults, ...keys, ...policies.get(id), subTenants: false };
    if (cache.size < 10_000) cache.set(id, policy);
    return policy;
  };
  return {
    policyOf,
    resolve(keyId, header) {
      if (header === undefined || header === '') return { id: keyId, policy: policyOf(keyId) };
      if (!TENANT_PART.test(header))
        return {
          status: 400,
          error: 'Conveyor-Tenant must be 1-64 letters, digits, ".", "_" or "-"',
        };
      if (!policyOf(keyId).subTenants)
        return {
          status: 403,
          error: `the API key ${keyId} may not name sub-tenants (TENANTS: ${keyId}:sub_tenants=on)`,
        };
      const id = `${keyId}/${header}`;
      return { id, policy: policyOf(id) };
    },
  };
}
