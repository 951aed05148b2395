import { Redis } from 'ioredis';
import { afterAll, describe, expect, it } from 'vitest';
import { canonicalQuery, createBulkTokens } from '../../../shared/bulk/token.ts';
import { TEST_REDIS_URL, uniqueId } from '../../support/env.ts';

const redis = new Redis(TEST_REDIS_URL, { maxRetriesPerRequest: null });
const prefix = uniqueId('bulktok');
afterAll(async () => {
  await redis.del(`${prefix}:bulk:token-key`);
  redis.disconnect();
});

describe('bulk confirmation tokens', () => {
  it('spell a query one way whatever its key order', () => {
    expect(canonicalQuery({ subject: 'c', module: 'orders', from: new Date('2026-01-01T00:00:00Z') })).toBe(
      canonicalQuery({ from: new Date('2026-01-01T00:00:00.000Z'), module: 'orders', subject: 'c' }),
    );
  });

  it('verify only the action, query and count they were signed for, before they expire', async () => {
    let now = 1_000_000;
    const tokens = createBulkTokens(redis, { prefix, ttlMs: 60_000, now: () => now });
    const binding = { action: 'redrive' as const, query: { module: 'orders' }, count: 30 };
    const token = await tokens.sign(binding);
    expect(await tokens.verify(token, binding)).toBe(true);
    expect(await tokens.verify(token, { ...binding, count: 31 })).toBe(false);
    expect(await tokens.verify(token, { ...binding, action: 'cancel' })).toBe(false);
    expect(await tokens.verify(token, { ...binding, query: { module: 'refunds' } })).toBe(false);
    expect(await tokens.verify(`${token}x`, binding)).toBe(false);
    expect(await tokens.verify('garbage', binding)).toBe(false);
    // Another replica (same Redis) accepts it; after the TTL nobody does.
    expect(await createBulkTokens(redis, { prefix, now: () => now }).verify(token, binding)).toBe(true);
    now += 60_001;
    expect(await tokens.verify(token, binding)).toBe(false);
  });
});
