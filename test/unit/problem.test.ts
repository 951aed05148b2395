import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Hono } from 'hono';
import { describe, expect, it } from 'vitest';
import { PlaceOrderSchema } from '../../modules/orders/domain.ts';
import { fieldErrors, problem } from '../../shared/errors/problem.ts';
import { bodyLimit } from '../../shared/http/body-limit.ts';
import { HTTP_EXCEPTION_CODES } from '../../shared/http/errors.ts';
import type { ApiEnv } from '../../shared/http/context.ts';

const root = fileURLToPath(new URL('../../', import.meta.url));

function sources(dir: string): string[] {
  return readdirSync(join(root, dir), { withFileTypes: true, recursive: true })
    .filter((e) => e.isFile() && e.name.endsWith('.ts'))
    .map((e) => readFileSync(join(e.parentPath, e.name), 'utf8'));
}

/**
 * Every problem code the API can answer with: the literal codes of `problem(…)` calls and of domain
 * errors (`readonly code = '…'`, `new StateConflictError('…'`) anywhere in the API, the modules and the
 * shared code they throw from, the codes of
 * framework errors, and those made at run time (`http.<status>`, `internal` for the unexpected).
 */
function emittedCodes(): { status: number; code: string }[] {
  const found = new Map<string, number>();
  for (const text of [...sources('api'), ...sources('shared'), ...sources('modules')]) {
    for (const m of text.matchAll(/problem\(\s*(\d{3}),\s*'([^']+)'/g)) found.set(m[2]!, Number(m[1]));
    // Conflicts a module raises with its own code.
    for (const m of text.matchAll(/new StateConflictError\(\s*'([^']+)'/g)) found.set(m[1]!, 409);
    for (const m of text.matchAll(/readonly code = '([^']+)';\s*readonly status = (\d{3})/g))
      found.set(m[1]!, Number(m[2]));
  }
  for (const [status, code] of Object.entries(HTTP_EXCEPTION_CODES)) found.set(code, Number(status));
  for (const status of [404, 405, 500]) found.set(`http.${status}`, status);
  found.set('internal', 500);
  return [...found].map(([code, status]) => ({ code, status }));
}

describe('problem types', () => {
  const codes = emittedCodes();

  it('finds the codes the API emits (the scan is not empty)', () => {
    expect(codes.map((c) => c.code)).toEqual(
      expect.arrayContaining([
        'request.invalid',
        'request.malformed',
        'order.not_refundable',
        'refund.not_found',
        'request.too_large',
        'request.unsupported_media_type',
        'route.not_found',
        'rate_limit.exceeded',
        'auth.unauthenticated',
        'auth.forbidden',
        'order.not_found',
        'idempotency.key_reused',
        'dependency.unavailable',
      ]),
    );
  });

  it('every type URL is the code in kebab-case, one spelling, and no two codes share a type', () => {
    const types = new Map<string, string>();
    for (const { status, code } of codes) {
      const p = problem(status, code);
      expect(p.type, code).toMatch(/^https:\/\/conveyor\.dev\/problems\/[a-z0-9]+(-[a-z0-9]+)*$/);
      expect(p.type, code).toBe(`https://conveyor.dev/problems/${code.replace(/[._]/g, '-')}`);
      expect(p.code).toBe(code); // the code itself is stable
      expect(types.get(p.type), `${code} and ${types.get(p.type)} share a type`).toBeUndefined();
      types.set(p.type, code);
    }
    expect(problem(429, 'rate_limit.exceeded').type).toBe(
      'https://conveyor.dev/problems/rate-limit-exceeded',
    );
  });
});

describe('field errors', () => {
  const errorsOf = (body: unknown) => {
    const r = PlaceOrderSchema.safeParse(body);
    return r.success ? [] : fieldErrors(r.error.issues);
  };
  const order = (item: Record<string, unknown>, over: Record<string, unknown> = {}) => ({
    customerId: 'c-1',
    currency: 'EUR',
    items: [{ sku: 's', quantity: 1, unitPriceCents: 1, ...item }],
    ...over,
  });

  it('one error per field, naming the bound the client can act on', () => {
    // 1e30 breaks both .max(10000) and the safe-integer range of .int(): one error, the tighter bound.
    expect(errorsOf(order({ quantity: 1e30 }))).toEqual([
      { path: 'items.0.quantity', message: 'Too big: expected number to be <=10000' },
    ]);
    expect(errorsOf(order({ unitPriceCents: 2 ** 53 }))).toEqual([
      { path: 'items.0.unitPriceCents', message: 'Too big: expected number to be <=100000000' },
    ]);
    // An empty id is too short and off-pattern: one error.
    expect(errorsOf(order({}, { customerId: '' }))).toEqual([
      { path: 'customerId', message: 'Too small: expected string to have >=1 characters' },
    ]);
  });

  it('keeps one error for each invalid field, in order, with the prefix of a batch item', () => {
    const r = PlaceOrderSchema.safeParse(order({ quantity: 1.5, sku: '' }, { currency: 'eur' }));
    const errors = fieldErrors(r.error!.issues, 'orders.3.');
    expect(errors.map((e) => e.path)).toEqual([
      'orders.3.currency',
      'orders.3.items.0.sku',
      'orders.3.items.0.quantity',
    ]);
    const root = PlaceOrderSchema.safeParse({ ...order({}), totalCents: 1 });
    expect(fieldErrors(root.error!.issues).map((e) => e.path)).toEqual(['(body)']);
    expect(fieldErrors(root.error!.issues, 'orders.0.').map((e) => e.path)).toEqual(['orders.0']);
  });
});

describe('413', () => {
  const app = new Hono<ApiEnv>()
    .use('*', bodyLimit({ maxSize: 16 }))
    .post('/x', async (c) => c.text(await c.req.text()));

  it('states the limit in the detail and as limitBytes, framed by Content-Length or chunked', async () => {
    const chunked = new ReadableStream({
      start(controller) {
        for (let i = 0; i < 4; i++) controller.enqueue(new TextEncoder().encode('x'.repeat(10)));
        controller.close();
      },
    });
    for (const body of ['x'.repeat(17), chunked]) {
      const res = await app.request('/x', { method: 'POST', body, duplex: 'half' } as RequestInit);
      expect(res.status).toBe(413);
      expect(res.headers.get('content-type')).toBe('application/problem+json');
      expect(await res.json()).toMatchObject({
        type: 'https://conveyor.dev/problems/request-too-large',
        code: 'request.too_large',
        detail: 'the request body is over the limit of 16 bytes',
        limitBytes: 16,
      });
    }
    expect((await app.request('/x', { method: 'POST', body: 'x'.repeat(16) })).status).toBe(200);
  });
});
