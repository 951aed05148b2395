import { describe, expect, it } from 'vitest';
import { parseTenantPolicies, tenantDirectory, type TenantPolicy } from '../../../shared/fairness/tenants.ts';
import { ConfigError, loadConfig } from '../../../shared/config/config.ts';
import { MODULES } from '../../../modules/registry.ts';

const defaults: TenantPolicy = { weight: 1, maxInFlight: 0, backlogQuota: 250_000, subTenants: false };

describe('tenant policies (TENANTS)', () => {
  it('parses each setting, and a sub-tenant starts from its key', () => {
    const dir = tenantDirectory(
      parseTenantPolicies(
        'shop:weight=3;max_in_flight=20;sub_tenants=on, shop/acme:weight=2,reports:backlog_quota=0',
      ),
      defaults,
    );
    expect(dir.policyOf('shop')).toEqual({
      weight: 3,
      maxInFlight: 20,
      backlogQuota: 250_000,
      subTenants: true,
    });
    expect(dir.policyOf('shop/acme')).toEqual({
      weight: 2,
      maxInFlight: 20,
      backlogQuota: 250_000,
      subTenants: false,
    });
    expect(dir.policyOf('shop/other')).toEqual({
      weight: 3,
      maxInFlight: 20,
      backlogQuota: 250_000,
      subTenants: false,
    });
    expect(dir.policyOf('reports')).toEqual({ ...defaults, backlogQuota: 0 });
    expect(dir.policyOf('anyone')).toEqual(defaults);
  });

  it('resolves a request: the key, or a sub-tenant only where the key may name one', () => {
    const dir = tenantDirectory(parseTenantPolicies('shop:sub_tenants=on'), defaults);
    expect(dir.resolve('shop', undefined)).toMatchObject({ id: 'shop' });
    expect(dir.resolve('shop', 'acme')).toMatchObject({ id: 'shop/acme' });
    expect(dir.resolve('shop', 'a/b')).toMatchObject({ status: 400 });
    expect(dir.resolve('shop', 'x'.repeat(65))).toMatchObject({ status: 400 });
    expect(dir.resolve('other', 'acme')).toMatchObject({ status: 403 });
  });

  it.each([
    ['shop:weight=0', /weight must be 1 or more/],
    ['shop:weight=1.5', /whole number/],
    ['shop:colour=red', /not <setting>=<value>/],
    ['shop:max_in_flight=-1', /0 or more/],
    ['sh op:weight=1', /tenant must be/],
    ['a/b/c:weight=1', /tenant must be/],
    ['shop/acme:sub_tenants=on', /only a key's own entry/],
    ['shop:weight=1,shop:weight=2', /another entry/],
  ])('refuses %s, naming why', (raw, why) => {
    expect(() => parseTenantPolicies(raw)).toThrow(why);
  });

  it('a bad TENANTS stops the process at start with the entry named', () => {
    expect(() => loadConfig({ TENANTS: 'shop:weight=zero' }, { modules: MODULES })).toThrow(ConfigError);
    expect(() => loadConfig({ TENANTS: 'shop:weight=zero' }, { modules: MODULES })).toThrow(
      /TENANTS entry 1 \(shop\)/,
    );
  });
});
