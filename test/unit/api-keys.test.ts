import { describe, expect, it } from 'vitest';
import {
  authenticate,
  DEV_KEY_LIMITS,
  generateApiKey,
  hasScope,
  knownScopes,
  limitsByPrincipal,
  parseApiKeys,
  sha256,
} from '../../shared/security/api-keys.ts';
import { requiredScope, scopePolicy } from '../../api/middleware/auth.ts';
import { MODULES } from '../../modules/registry.ts';

/** Every scope a key may hold in this build. */
const SCOPES = knownScopes(MODULES);

describe('API keys', () => {
  it('parses id, scopes and the SHA-256 of the key, and authenticates only the right secret', () => {
    const { key, entry } = generateApiKey('shop', ['orders:write', 'orders:read']);
    const keys = parseApiKeys(`${entry}, ops:admin:${sha256('ops-secret').toString('hex')}`, SCOPES);
    expect(keys.map((k) => [k.id, k.scopes])).toEqual([
      ['shop', ['orders:write', 'orders:read']],
      ['ops', ['admin']],
    ]);
    expect(JSON.stringify(keys)).not.toContain(key); // only the hash is kept
    expect(authenticate(keys, key)).toEqual({ id: 'shop', scopes: ['orders:write', 'orders:read'] });
    expect(authenticate(keys, 'ops-secret')?.id).toBe('ops');
    expect(authenticate(keys, `${key}x`)).toBeNull();
  });

  it('names a bad entry', () => {
    expect(() => parseApiKeys('shop:orders:write:nothex', SCOPES)).toThrow(/entry 1 \(shop\)/);
    expect(() => parseApiKeys(`shop:orders:delete:${'a'.repeat(64)}`, SCOPES)).toThrow(
      /unknown scope "orders:delete"/,
    );
    expect(() => parseApiKeys('garbage', SCOPES)).toThrow(/entry 1/);
  });

  it('an entry may end with its own limits, <writes>/<reads>, either side optional', () => {
    const hash = sha256('s').toString('hex');
    const keys = parseApiKeys(
      [
        `shop:orders:write+orders:read:${hash}:5000/20000`,
        `reports:orders:read:${hash}:/50000`,
        `ingest:orders:write:${hash}:300/`,
        `plain:orders:write:${hash}`,
      ].join(','),
      SCOPES,
    );
    expect(keys.map((k) => [k.id, k.scopes, k.limits])).toEqual([
      ['shop', ['orders:write', 'orders:read'], { writes: 5000, reads: 20000 }],
      ['reports', ['orders:read'], { reads: 50000 }],
      ['ingest', ['orders:write'], { writes: 300 }],
      ['plain', ['orders:write'], undefined],
    ]);
    // Unset sides take the defaults; the dev key (when accepted) gets at least DEV_KEY_LIMITS.
    const defaults = { writes: 100, reads: 1000 };
    expect(Object.fromEntries(limitsByPrincipal(keys, defaults, false))).toEqual({
      shop: { writes: 5000, reads: 20000 },
      reports: { writes: 100, reads: 50000 },
      ingest: { writes: 300, reads: 1000 },
    });
    expect(limitsByPrincipal([], defaults, true).get('dev')).toEqual({ writes: 10_000, reads: 10_000 });
    expect(DEV_KEY_LIMITS).toEqual({ writes: 10_000, reads: 10_000 });
    expect(limitsByPrincipal([], { writes: 1e6, reads: 5 }, true).get('dev')).toEqual({
      writes: 1e6,
      reads: 10_000,
    });
    // What npm run api-key prints parses back to the same limits.
    const generated = generateApiKey('bulk', ['orders:write'], { writes: 7 });
    expect(generated.entry).toMatch(/^bulk:orders:write:[0-9a-f]{64}:7\/$/);
    expect(parseApiKeys(generated.entry, SCOPES)[0]?.limits).toEqual({ writes: 7 });
    expect(authenticate(parseApiKeys(generated.entry, SCOPES), generated.key)?.id).toBe('bulk');
  });

  it.each([
    ['0/5', 'the writes limit must be a whole number from 1 to 1000000000'],
    ['5/1000000001', 'the reads limit must be a whole number from 1 to 1000000000'],
    ['5000', 'the limits must be <writes>/<reads>, e.g. 5000/20000'],
    ['5/x', 'the limits must be <writes>/<reads>, e.g. 5000/20000'],
    ['1.5/2', 'the limits must be <writes>/<reads>, e.g. 5000/20000'],
    ['/', 'the limits must name writes, reads or both, e.g. 5000/20000 or /20000'],
  ])('names an entry whose limits %s are malformed', (limits, message) => {
    const entry = `shop:orders:write+orders:read:${sha256('s').toString('hex')}:${limits}`;
    expect(() => parseApiKeys(`ops:admin:${sha256('o').toString('hex')},${entry}`, SCOPES)).toThrow(
      `API_KEYS entry 2 (shop): ${message}`,
    );
  });

  it('refuses two entries of one id (one budget) with different limits', () => {
    const hash = (s: string) => sha256(s).toString('hex');
    expect(() => parseApiKeys(`a:admin:${hash('1')}:5/5,a:admin:${hash('2')}:6/5`, SCOPES)).toThrow(
      'API_KEYS entry 2 (a): another entry of this id has other limits',
    );
    expect(parseApiKeys(`a:admin:${hash('1')}:5/5,a:admin:${hash('2')}:5/5`, SCOPES)).toHaveLength(2); // rotation
  });

  it('maps routes to scopes; admin implies every scope; unlisted routes need admin', () => {
    expect(requiredScope('POST', '/v1/orders')).toBe('orders:write');
    expect(requiredScope('POST', '/v1/orders/batch')).toBe('orders:write');
    expect(requiredScope('GET', '/v1/orders/x')).toBe('orders:read');
    expect(requiredScope('HEAD', '/v1/orders/x')).toBe('orders:read'); // a GET without its body
    expect(requiredScope('GET', '/v1/stats')).toBe('orders:read');
    expect(requiredScope('POST', '/v1/dead-letters/x/redrive')).toBe('admin');
    expect(requiredScope('GET', '/v1/audit')).toBe('admin');
    expect(hasScope({ id: 'a', scopes: ['admin'] }, 'orders:write')).toBe(true);
    expect(hasScope({ id: 'r', scopes: ['orders:read'] }, 'orders:write')).toBe(false);
    expect(requiredScope('GET', '/v1/scaling/orders')).toBe('scaling:read');
    expect(requiredScope('POST', '/v1/scaling/orders')).toBe('admin');
    expect(requiredScope('DELETE', '/v1/sessions/current')).toBeNull();
    // Segments, not string prefixes: /v1/ordersX is nobody's route.
    expect(requiredScope('GET', '/v1/ordersX')).toBe('admin');
  });

  it('gives each module its declared scopes: a refund is read with orders:read, its Location included', () => {
    // Every route prefix a registered module declares, with its declared scopes.
    for (const m of MODULES) {
      for (const path of m.paths) {
        const concrete = path.replace(/:[^/]+/g, 'x');
        expect([m.name, requiredScope('GET', `${concrete}/y`)]).toEqual([m.name, m.scopes.read]);
        expect([m.name, requiredScope('POST', concrete)]).toEqual([m.name, m.scopes.write]);
      }
    }
    expect(requiredScope('POST', '/v1/orders/o-1/refunds')).toBe('orders:write');
    expect(requiredScope('GET', '/v1/orders/o-1/refunds')).toBe('orders:read');
    expect(requiredScope('GET', '/v1/refunds/r-1')).toBe('orders:read');
    expect(requiredScope('POST', '/v1/refunds/r-1')).toBe('orders:write');

    // A module of its own scopes: the most specific prefix wins, and keys may hold its scopes.
    const refunds = MODULES.find((m) => m.name === 'refunds')!;
    const own = [
      ...MODULES.filter((m) => m !== refunds),
      { ...refunds, scopes: { write: 'refunds:write', read: 'refunds:read' } },
    ];
    const policy = scopePolicy(own);
    expect(requiredScope('POST', '/v1/orders/o-1/refunds', policy)).toBe('refunds:write');
    expect(requiredScope('GET', '/v1/refunds/r-1', policy)).toBe('refunds:read');
    expect(requiredScope('GET', '/v1/orders/o-1', policy)).toBe('orders:read');
    expect(requiredScope('POST', '/v1/orders/batch', policy)).toBe('orders:write');
    const declared = (modules: readonly { scopes: { write: string; read: string } }[]) => [
      ...new Set(modules.flatMap((m) => [m.scopes.write, m.scopes.read])),
    ];
    const scopes = knownScopes(own);
    // The core's, then each module's in registry order, once each.
    expect(scopes).toEqual(['scaling:read', 'admin', ...declared(own)]);
    expect(scopes).toEqual(expect.arrayContaining(['refunds:write', 'refunds:read']));
    const hex = sha256('k').toString('hex');
    expect(parseApiKeys(`r:refunds:read+refunds:write:${hex}`, scopes)[0]?.scopes).toEqual([
      'refunds:read',
      'refunds:write',
    ]);
    // This build's registry declares no refunds:* scope, so keys cannot hold one.
    expect(SCOPES).toEqual(['scaling:read', 'admin', ...declared(MODULES)]);
    expect(SCOPES).not.toContain('refunds:read');
    expect(() => parseApiKeys(`r:refunds:read:${hex}`, SCOPES)).toThrow(/unknown scope "refunds:read"/);

    // Scope names keep API_KEYS parseable; two modules may not claim one path with different scopes.
    expect(() => knownScopes([{ name: 'x', scopes: { write: 'x+y:write', read: 'x:read' } }])).toThrow(
      /module x declares the scope "x\+y:write"/,
    );
    expect(() => knownScopes([{ name: 'x', scopes: { write: 'admin', read: 'x:read' } }])).toThrow(
      /not a core scope/,
    );
    expect(() =>
      scopePolicy([
        ...own,
        { name: 'other', scopes: { write: 'o:write', read: 'o:read' }, paths: ['/v1/refunds'] },
      ]),
    ).toThrow(/modules refunds and other both claim \/v1\/refunds/);
  });
});
