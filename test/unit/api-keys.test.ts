import { describe, expect, it } from 'vitest';
import {
  authenticate,
  generateApiKey,
  hasScope,
  parseApiKeys,
  sha256,
} from '../../shared/security/api-keys.ts';
import { requiredScope } from '../../api/middleware/auth.ts';

describe('API keys', () => {
  it('parses id, scopes and the SHA-256 of the key, and authenticates only the right secret', () => {
    const { key, entry } = generateApiKey('shop', ['orders:write', 'orders:read']);
    const keys = parseApiKeys(`${entry}, ops:admin:${sha256('ops-secret').toString('hex')}`);
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
    expect(() => parseApiKeys('shop:orders:write:nothex')).toThrow(/entry 1 \(shop\)/);
    expect(() => parseApiKeys(`shop:orders:delete:${'a'.repeat(64)}`)).toThrow(
      /unknown scope "orders:delete"/,
    );
    expect(() => parseApiKeys('garbage')).toThrow(/entry 1/);
  });

  it('maps routes to scopes; admin implies every scope; unlisted routes need admin', () => {
    expect(requiredScope('POST', '/v1/orders')).toBe('orders:write');
    expect(requiredScope('POST', '/v1/orders/batch')).toBe('orders:write');
    expect(requiredScope('GET', '/v1/orders/x')).toBe('orders:read');
    expect(requiredScope('GET', '/v1/stats')).toBe('orders:read');
    expect(requiredScope('POST', '/v1/dead-letters/x/redrive')).toBe('admin');
    expect(requiredScope('GET', '/v1/audit')).toBe('admin');
    expect(hasScope({ id: 'a', scopes: ['admin'] }, 'orders:write')).toBe(true);
    expect(hasScope({ id: 'r', scopes: ['orders:read'] }, 'orders:write')).toBe(false);
  });
});
