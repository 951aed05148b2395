import { describe, expect, it } from 'vitest';
import { fingerprint } from '../../shared/http/idempotency.ts';
import { toProblem } from '../../shared/errors/problem.ts';
import { IdempotencyKeyReusedError, ValidationError } from '../../shared/errors/domain.ts';
import { OrderNotFoundError } from '../../modules/orders/errors.ts';

describe('idempotency fingerprint', () => {
  it('ignores key order and whitespace but not values, paths or methods', () => {
    const a = fingerprint('POST', '/v1/orders', { b: 1, a: [1, { y: 2, x: 1 }] });
    expect(fingerprint('POST', '/v1/orders', { a: [1, { x: 1, y: 2 }], b: 1 })).toBe(a);
    expect(fingerprint('POST', '/v1/orders', { a: [1, { x: 1, y: 3 }], b: 1 })).not.toBe(a);
    expect(fingerprint('POST', '/v1/orders/batch', { b: 1, a: [1, { y: 2, x: 1 }] })).not.toBe(a);
  });
});

describe('problem details', () => {
  it('maps domain errors to RFC 9457 problems with stable codes and no internals', () => {
    expect(toProblem(new OrderNotFoundError('x'), '/v1/orders/x')).toMatchObject({
      status: 404,
      code: 'order.not_found',
      title: 'Not Found',
      instance: '/v1/orders/x',
    });
    expect(toProblem(new IdempotencyKeyReusedError()).status).toBe(422);
    expect(toProblem(new ValidationError('bad', [{ path: 'a', message: 'm' }])).errors).toEqual([
      { path: 'a', message: 'm' },
    ]);
    const internal = toProblem(new Error('password=hunter2 at /srv/app.ts:1'));
    expect(internal.status).toBe(500);
    expect(JSON.stringify(internal)).not.toContain('hunter2');
  });
});
