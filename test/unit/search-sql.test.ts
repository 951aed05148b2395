import { describe, expect, it } from 'vitest';
import { compareKeys, decodeCursor, encodeCursor, timestampOfMicros } from '../../shared/search/cursor.ts';
import { pageSql, startsWith, whereOf } from '../../shared/search/search.sql.ts';
import { SEARCH_SOURCES } from '../../shared/search/sources.ts';

const orders = SEARCH_SOURCES.get('orders')!;
const refunds = SEARCH_SOURCES.get('refunds')!;
const placeholders = (sql: string) => [...sql.matchAll(/\$(\d+)/g)].map((m) => Number(m[1]));

describe('search cursors', () => {
  it('round-trip to the microsecond and reject anything else', () => {
    const c = { us: 1_780_000_000_123_456, module: 'orders', id: '0b8f3c8e-8f1e-4d3c-9a6b-1f2e3d4c5b6a' };
    expect(decodeCursor(encodeCursor(c))).toEqual(c);
    expect(timestampOfMicros(c.us)).toBe('2026-05-28T20:26:40.123456Z');
    for (const bad of ['', 'x', Buffer.from('[1,"orders","not-a-uuid"]').toString('base64url')])
      expect(() => decodeCursor(bad)).toThrow('invalid cursor');
  });

  it('order newest first, then module, then id', () => {
    const a = { us: 2, module: 'orders', id: 'a' };
    expect(compareKeys(a, { us: 1, module: 'orders', id: 'a' })).toBeLessThan(0);
    expect(compareKeys(a, { us: 2, module: 'refunds', id: 'a' })).toBeLessThan(0);
    expect(compareKeys(a, { us: 2, module: 'orders', id: 'b' })).toBeLessThan(0);
  });
});

describe('search SQL', () => {
  it('numbers parameters across branches, leaving none for a branch that cannot match', () => {
    // A customer id is no refund subject (a uuid): the refunds branch is dropped with its parameters.
    const sql = pageSql([orders, refunds], { status: ['rejected'], subject: 'cust-1', apiKey: 'k' }, 51)!;
    expect(sql.text).not.toContain('FROM refunds');
    expect(Math.max(...placeholders(sql.text))).toBe(sql.values.length);
  });

  it('walks the failed rows alone for failed statuses, and escapes error prefixes', () => {
    const values: unknown[] = [];
    const where = whereOf(orders, { status: ['dead_lettered'], errorCode: '50%_off' }, values)!;
    expect(where).toContain('reason IS NOT NULL');
    expect(where).toContain(`(status || '') = ANY($1::text[])`);
    expect(values).toContain('50\\%\\_off%');
    expect(startsWith('a\\b')).toBe('a\\\\b%');
  });

  it('pending statuses only: no SQL at all', () => {
    expect(pageSql([orders, refunds], { status: ['queued', 'processing'] }, 10)).toBeNull();
  });
});
