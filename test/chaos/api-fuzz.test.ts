import fc from 'fast-check';
import { request as httpRequest, type ClientRequest, type OutgoingHttpHeaders } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { OrderJobSchema } from '../../modules/orders/domain.ts';
import type { Proc } from '../support/processes.ts';
import { chaosEnv, ordersQueue, startApi, teardown } from './harness.ts';

// Scenario 8: property-based fuzzing of every route the API documents (read from its own
// /openapi.json, so new routes are fuzzed too) plus the operational ones and paths that exist nowhere.
// Random methods, paths, parameters, headers and bodies — well-formed, malformed and hostile — must
// never produce a 5xx, and must never put anything in the orders queue but valid commands, one per
// order the API said it accepted.

interface Route {
  method: string;
  path: string;
}

const METHODS = ['GET', 'POST', 'PUT', 'PATCH', 'DELETE', 'HEAD', 'OPTIONS'];
const EXTRA_ROUTES: Route[] = [
  { method: 'GET', path: '/healthz' },
  { method: 'GET', path: '/readyz' },
  { method: 'GET', path: '/metrics' },
  { method: 'GET', path: '/openapi.json' },
];

const text = fc.string({ maxLength: 40 });
const nasty = fc.constantFrom(
  '',
  ' ',
  '%',
  '%zz',
  '%E0%A4%A',
  '..%2F..%2Fetc%2Fpasswd',
  "'; DROP TABLE orders; --",
  '\u0000',
  '💥',
  'a'.repeat(300),
  '00000000-0000-0000-0000-000000000000',
  '-1',
  '1e309',
  'NaN',
  '[]',
  '{}',
);
const idLike = fc.oneof(fc.uuid(), fc.stringMatching(/^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$/), text, nasty);
const itemish = fc.record(
  {
    sku: idLike,
    quantity: fc.oneof(fc.integer({ min: -5, max: 20_000 }), fc.double(), text, fc.constant(null)),
    unitPriceCents: fc.oneof(
      fc.integer({ min: -1, max: 200_000_000 }),
      fc.constant(Number.MAX_SAFE_INTEGER),
      fc.double(),
      text,
    ),
    extra: fc.jsonValue({ maxDepth: 1 }),
  },
  { requiredKeys: [] },
);
/** Near-valid orders: each field sometimes right, sometimes wrong, sometimes missing or extra. */
const orderish = fc.record(
  {
    customerId: idLike,
    currency: fc.oneof(fc.constantFrom('EUR', 'USD', 'XTS', 'eur', 'EURO', ''), text),
    items: fc.oneof(fc.array(itemish, { maxLength: 3 }), fc.jsonValue({ maxDepth: 1 })),
    total: fc.integer(),
  },
  { requiredKeys: [] },
);
const validOrder = fc.record({
  customerId: fc.stringMatching(/^c-[a-z0-9]{1,8}$/),
  currency: fc.constantFrom('EUR', 'USD', 'XTS'),
  items: fc.array(
    fc.record({
      sku: fc.stringMatching(/^s-[a-z0-9]{1,8}$/),
      quantity: fc.integer({ min: 1, max: 10_000 }),
      unitPriceCents: fc.integer({ min: 0, max: 100_000_000 }),
    }),
    { minLength: 1, maxLength: 3 },
  ),
});
const body = fc.oneof(
  validOrder.map((o) => JSON.stringify(o)),
  orderish.map((o) => JSON.stringify(o)),
  fc
    .record({ orders: fc.array(fc.oneof(validOrder, orderish), { maxLength: 12 }) })
    .map((o) => JSON.stringify(o)),
  fc.jsonValue({ maxDepth: 3 }).map((v) => JSON.stringify(v)),
  fc.string({ unit: 'binary', maxLength: 200 }),
  fc.uint8Array({ maxLength: 200 }).map((b) => Buffer.from(b).toString('latin1')),
  fc.constantFrom(
    '{',
    '{"customerId":',
    'null',
    '[]',
    '""',
    '{"orders":null}',
    '{"__proto__":{"admin":true}}',
  ),
  fc.constant(JSON.stringify({ orders: Array.from({ length: 1_001 }, () => ({})) })),
  fc.constant('x'.repeat(1_100_000)),
);
// Values node:http refuses to send (NUL, non-Latin-1) are skipped as unsendable, not filtered here.
const headerValue = fc.oneof(text, nasty, fc.uuid());
const headers = fc
  .record(
    {
      'content-type': fc.constantFrom(
        'application/json',
        'application/json; charset=utf-8',
        'application/problem+json',
        'text/plain',
        'application/x-www-form-urlencoded',
        'multipart/form-data; boundary=x',
        'application/json; charset=utf-16',
        'APPLICATION/JSON',
      ),
      'idempotency-key': headerValue,
      'x-correlation-id': headerValue,
      'x-session-id': headerValue,
      cookie: headerValue,
      accept: fc.constantFrom('application/json', '*/*', 'text/html', 'application/xml'),
      'content-encoding': fc.constantFrom('gzip', 'br', 'identity'),
    },
    { requiredKeys: [] },
  )
  .chain((h) =>
    // Mostly the development key (every scope) so requests get past auth to the handlers; sometimes
    // none, a wrong one or garbage.
    fc
      .oneof(
        { weight: 8, arbitrary: fc.constant('Bearer dev') },
        { weight: 1, arbitrary: fc.constant(undefined) },
        {
          weight: 1,
          arbitrary: fc.oneof(
            headerValue,
            headerValue.map((v) => `Bearer ${v}`),
            headerValue.map((v) => `Basic ${v}`),
          ),
        },
      )
      .map((authorization) => {
        const { 'x-session-id': session, ...rest } = h;
        // Only without a key does the API look at a session id.
        return authorization === undefined
          ? { ...rest, ...(session === undefined ? {} : { 'x-session-id': session }) }
          : { ...rest, authorization };
      }),
  );

/**
 * One request on a connection of its own (no keep-alive), so each answer is judged alone: a server that
 * closes a connection after answering early (413 before reading the body) cannot fail the next case.
 * `unsendable` = node:http refused the input (e.g. a control character in a header): nothing was sent.
 */
function send(
  url: string,
  method: string,
  headers: OutgoingHttpHeaders,
  body: string | undefined,
): Promise<{ status: number; text: string } | 'unsendable'> {
  return new Promise((resolve, reject) => {
    let req: ClientRequest;
    try {
      req = httpRequest(url, { method, headers, agent: false });
    } catch {
      return resolve('unsendable');
    }
    let answered = false;
    req.on('response', (res) => {
      answered = true;
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () =>
        resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString('utf8') }),
      );
      res.on('error', reject);
    });
    // Writing the rest of a body the server already refused may fail once it has answered: fine.
    req.on('error', (err) => (answered ? undefined : reject(err)));
    req.end(body);
  });
}

describe('chaos: fuzzing every API route', () => {
  const env = chaosEnv();
  const procs: (Proc | undefined)[] = [];
  let api: Proc & { url: string };
  let routes: Route[] = [];

  beforeAll(async () => {
    api = await startApi(env, procs);
    const spec = (await (await fetch(`${api.url}/openapi.json`)).json()) as {
      paths: Record<string, Record<string, unknown>>;
    };
    routes = [
      ...Object.entries(spec.paths).flatMap(([path, ops]) =>
        Object.keys(ops).map((method) => ({
          method: method.toUpperCase(),
          path: path.replace(/\{(\w+)\}/g, ':$1'),
        })),
      ),
      ...EXTRA_ROUTES,
    ];
  });
  afterAll(async () => {
    await teardown(env, procs);
  });

  it('random methods, paths, headers and bodies never yield a 5xx nor enqueue an invalid job', async () => {
    expect(routes.map((r) => r.path)).toEqual(
      expect.arrayContaining(['/v1/orders', '/v1/orders/batch', '/v1/orders/:orderId']),
    );
    const anything = fc.record({
      route: fc.oneof(
        { weight: 5, arbitrary: fc.constantFrom(...routes) },
        { weight: 1, arbitrary: fc.webPath().map((path) => ({ method: 'GET', path: `/v1${path}` })) },
      ),
      method: fc.option(fc.constantFrom(...METHODS), { freq: 4 }),
      params: fc.array(idLike, { minLength: 3, maxLength: 3 }),
      query: fc.option(
        fc.oneof(
          fc.webQueryParameters(),
          fc
            .dictionary(fc.constantFrom('ids', 'limit', 'cursor', 'days', 'status', 'x'), idLike)
            .map((d) => new URLSearchParams(d).toString()),
        ),
        { freq: 2 },
      ),
      headers,
      body,
    });
    // A third of the runs aim at the two routes that enqueue, with JSON bodies and the dev key, so the
    // handlers (not only the validators) are fuzzed and some orders really are accepted.
    const placing = fc.record({
      route: fc.constantFrom(
        { method: 'POST', path: '/v1/orders' },
        { method: 'POST', path: '/v1/orders/batch' },
      ),
      method: fc.constant(null),
      params: fc.constant([]),
      query: fc.constant(null),
      headers: headers.map((h) => ({
        ...h,
        'content-type': 'application/json',
        authorization: 'Bearer dev',
        'content-encoding': 'identity',
      })),
      body,
    });
    const request = fc.oneof({ weight: 2, arbitrary: anything }, { weight: 1, arbitrary: placing });

    const { queue, close } = ordersQueue(env);
    const accepted = new Set<string>();
    const statuses = new Map<number, number>();
    try {
      const before = await queue.count();
      expect(before).toBe(0);
      await fc.assert(
        fc.asyncProperty(request, async (r) => {
          const method = r.method ?? r.route.method;
          let i = 0;
          const path = r.route.path.replace(/:\w+/g, () => encodeURIComponent(r.params[i++] ?? ''));
          const url = `${api.url}${path}${r.query ? `?${r.query}` : ''}`;
          const withBody = !['GET', 'HEAD'].includes(method);
          const res = await send(url, method, r.headers, withBody ? r.body : undefined);
          if (res === 'unsendable') return true;
          const { text } = res;
          statuses.set(res.status, (statuses.get(res.status) ?? 0) + 1);
          if (res.status === 202 && method === 'POST') {
            const json = JSON.parse(text) as { orderId?: string; orders?: { orderId?: string }[] };
            if (json.orderId) accepted.add(json.orderId);
            for (const o of json.orders ?? []) if (o.orderId) accepted.add(o.orderId);
          }
          expect(res.status, `${method} ${url} -> ${res.status} ${text.slice(0, 300)}`).toBeLessThan(500);
          // Every error the API answers is a problem whose type is its code in kebab-case, one spelling
          // for all. (A body-less 400 comes from Node's HTTP parser, e.g. a chunked DELETE: not the API's.)
          if (res.status >= 400 && method !== 'HEAD' && text !== '') {
            const p = JSON.parse(text) as { type?: string; code?: string };
            expect(p.type, `${method} ${url} -> ${text.slice(0, 300)}`).toBe(
              `https://conveyor.dev/problems/${(p.code ?? '').replace(/[._]/g, '-')}`,
            );
            expect(p.type).toMatch(/^https:\/\/conveyor\.dev\/problems\/[a-z0-9]+(-[a-z0-9]+)*$/);
          }
        }),
        {
          numRuns: Number(process.env.FUZZ_RUNS ?? 250),
          seed: Number(process.env.FUZZ_SEED ?? Date.now() % 2 ** 31),
          endOnFailure: true,
        },
      );

      // Exactly the accepted orders are queued, each a valid command.
      const jobs = await queue.getJobs(
        ['waiting', 'prioritized', 'delayed', 'active', 'completed', 'failed'],
        0,
        -1,
      );
      expect(jobs.length).toBe(accepted.size);
      expect(new Set(jobs.map((j) => j.id))).toEqual(accepted);
      const invalid = jobs.filter((j) => !OrderJobSchema.safeParse(j.data).success);
      expect(invalid.map((j) => j.data)).toEqual([]);
      // The fuzzer reached the handlers, not only the validators.
      expect(statuses.get(202) ?? 0).toBeGreaterThan(0);
      expect(api.child.exitCode).toBeNull();
    } finally {
      await close();
    }
  });
});
