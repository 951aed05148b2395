import { randomBytes, randomUUID } from 'node:crypto';
import { Queue, Worker } from 'bullmq';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { OrdersQueues } from '../../modules/orders/queue.ts';
import { loadConfig } from '../../shared/config/config.ts';
import { generateApiKey } from '../../shared/security/api-keys.ts';
import type { CommandSummary } from '../../shared/search/query.ts';
import { isolatedEnv } from '../support/env.ts';
import { request, sampleOrder } from '../support/http.ts';
import { startPlatform, type Platform } from '../support/platform.ts';
import { MODULES } from '../../modules/registry.ts';

// Command search (issue #23) over the API on real PostgreSQL and Redis: decided commands seeded in the
// write models as the workers write them, pending ones posted through the API (no workers run, so they
// stay queued; one is taken by a manual worker: processing). Every filter, cursor pagination while rows
// are inserted, and what a producer key may see.
const admin = generateApiKey('ops', ['admin']);
const prodA = generateApiKey('prod-a', ['orders:read', 'orders:write']);
const prodB = generateApiKey('prod-b', ['orders:read', 'orders:write']);
const hooksOnly = generateApiKey('hooks', ['webhooks:read']);
const bearer = (k: { key: string }) => ({ authorization: `Bearer ${k.key}` });

let platform: Platform;
let orders: Queue;
let worker: Worker | undefined;

interface Expected {
  module: string;
  id: string;
  status: string;
  tenant: string | null;
  apiKey: string | null;
  subject: string | null;
  correlationId: string;
  traceId: string | null;
  errorCode: string | null;
  at: string; // timestamptz text with microseconds
}
const all: Expected[] = [];
const BASE = Date.UTC(2026, 5, 1, 12, 0, 0);
const iso = (ms: number, micros = 0) =>
  `${new Date(ms).toISOString().slice(0, 23)}${String(micros).padStart(3, '0')}Z`;
const hex = (n: number) => randomBytes(n).toString('hex');

/** The search's order: accepted_at DESC, module, id. */
function sorted(rows: Expected[]): Expected[] {
  return [...rows].sort((a, b) =>
    a.at !== b.at
      ? a.at < b.at
        ? 1
        : -1
      : a.module !== b.module
        ? a.module < b.module
          ? -1
          : 1
        : a.id < b.id
          ? -1
          : 1,
  );
}

async function seedOrder(i: number, over: Partial<Expected> = {}): Promise<Expected> {
  const key = i % 2 === 0 ? 'prod-a' : 'prod-b';
  const status = (['completed', 'completed', 'rejected', 'dead_lettered', 'cancelled'] as const)[i % 5]!;
  const reason =
    status === 'rejected'
      ? 'payment declined: card expired'
      : status === 'dead_lettered'
        ? 'ledger offline'
        : null;
  // Pairs share a millisecond and differ in microseconds; every tenth shares its neighbour's exact time.
  const at = iso(BASE + Math.floor(i / 2) * 1_000, i % 10 === 0 ? 0 : (i % 2) * 7);
  const row: Expected = {
    module: 'orders',
    id: randomUUID(),
    status,
    tenant: i % 6 === 0 ? `${key}/east` : key,
    apiKey: key,
    subject: `cust-${i % 4}`,
    correlationId: `corr-${i}-${hex(3)}`,
    traceId: null,
    errorCode: reason,
    at,
    ...over,
  };
  await platform.rt.pool.query(
    `INSERT INTO orders (order_id, customer_id, currency, total_cents, items, status, reason, attempts, correlation_id,
                         accepted_at, decided_at, accepted_by, tenant)
     VALUES ($1, $2, 'EUR', 100, '[]', $3, $4, 1, $5, $6, $6::timestamptz + interval '1 s', $7, $8)`,
    [row.id, row.subject, row.status, reason, row.correlationId, row.at, row.apiKey, row.tenant],
  );
  return row;
}

async function seedRefund(i: number, orderId: string): Promise<Expected> {
  const key = i % 2 === 0 ? 'prod-a' : 'prod-b';
  const rejected = i % 3 === 0;
  const row: Expected = {
    module: 'refunds',
    id: randomUUID(),
    status: rejected ? 'rejected' : 'completed',
    tenant: key,
    apiKey: key,
    subject: orderId,
    correlationId: `corr-refund-${i}-${hex(3)}`,
    traceId: null,
    errorCode: rejected ? 'refund.exceeds_order_total' : null,
    // Some share an order's exact time: the module breaks the tie.
    at: iso(BASE + i * 3_000, i % 4 === 0 ? 0 : 5),
  };
  await platform.rt.pool.query(
    `INSERT INTO refunds (refund_id, order_id, amount_cents, status, code, detail, attempts, correlation_id, requested_at, tenant)
     VALUES ($1, $2, 10, $3, $4, $5, 1, $6, $7, $8)`,
    [
      row.id,
      orderId,
      row.status,
      row.errorCode,
      rejected ? 'exceeds the order total' : null,
      row.correlationId,
      row.at,
      row.tenant,
    ],
  );
  return row;
}

/** An outbox event of the command carrying a W3C trace context, as the workers write them (migration 0009). */
async function trace(row: Expected): Promise<void> {
  row.traceId = hex(16);
  const refund = row.module === 'refunds';
  await platform.rt.pool.query(
    `INSERT INTO outbox (event_id, event_type, event_version, aggregate_id, correlation_id, envelope, trace_context, published_at)
     VALUES ($1, $2, 1, $3, $4, $5, $6, now())`,
    [
      randomUUID(),
      refund ? 'refund.completed' : 'order.placed',
      refund ? row.subject : row.id,
      row.correlationId,
      JSON.stringify({ payload: refund ? { refundId: row.id } : { orderId: row.id } }),
      JSON.stringify({ traceparent: `00-${row.traceId}-${hex(8)}-01` }),
    ],
  );
}

async function search(params: Record<string, string>, who = admin) {
  return request<{ commands: CommandSummary[]; nextCursor: string | null }>(
    `${platform.url}/v1/commands?${new URLSearchParams(params).toString()}`,
    { headers: bearer(who) },
  );
}

/** Every page of a search, following the cursors. */
async function everything(params: Record<string, string>, who = admin, limit = 7): Promise<CommandSummary[]> {
  const out: CommandSummary[] = [];
  let cursor: string | null = null;
  for (let pages = 0; pages < 100; pages++) {
    const res = await search({ ...params, limit: String(limit), ...(cursor ? { cursor } : {}) }, who);
    expect(res.status, JSON.stringify(res.body)).toBe(200);
    out.push(...res.body.commands);
    cursor = res.body.nextCursor;
    if (!cursor) return out;
  }
  throw new Error('more than 100 pages');
}

const ids = (rows: readonly { id: string }[]) => rows.map((r) => r.id);

beforeAll(async () => {
  platform = await startPlatform(
    loadConfig(isolatedEnv({ API_KEYS: [admin, prodA, prodB, hooksOnly].map((k) => k.entry).join(',') }), {
      modules: MODULES,
    }),
    { workers: [] },
  );
  orders = new Queue(OrdersQueues.commands, {
    connection: platform.rt.redis,
    prefix: platform.config.redis.queuePrefix,
  });
  for (let i = 0; i < 40; i++) all.push(await seedOrder(i));
  for (let i = 0; i < 8; i++) all.push(await seedRefund(i, all[i]!.id));
  await trace(all[3]!);
  await trace(all[17]!);
  await trace(all[41]!); // a refund
  // Pending: posted through the API by prod-a; no command worker runs, so they stay queued.
  for (let i = 0; i < 3; i++) {
    const res = await request(`${platform.url}/v1/orders`, {
      method: 'POST',
      json: sampleOrder({ customerId: 'cust-pending' }),
      headers: bearer(prodA),
    });
    expect(res.status).toBe(202);
    const job = await orders.getJob(res.body.orderId as string);
    all.push({
      module: 'orders',
      id: res.body.orderId as string,
      status: 'queued',
      tenant: 'prod-a',
      apiKey: 'prod-a',
      subject: 'cust-pending',
      correlationId: (job!.data as { correlationId: string }).correlationId,
      traceId: null,
      errorCode: null,
      at: iso(Date.parse((job!.data as { acceptedAt: string }).acceptedAt)),
    });
  }
  // One pending order taken by a worker: processing.
  worker = new Worker(OrdersQueues.commands, null, {
    connection: { url: platform.config.redis.url, maxRetriesPerRequest: null },
    prefix: platform.config.redis.queuePrefix,
    autorun: false,
  });
  const taken = await worker.getNextJob('search-test-token');
  expect(taken).toBeTruthy();
  all.find((r) => r.id === taken!.id)!.status = 'processing';
});

afterAll(async () => {
  await worker?.close(true).catch(() => undefined);
  await orders?.close();
  await platform?.close();
});

describe('GET /v1/commands', () => {
  it('lists every command, decided and pending, in one stable order across pages', async () => {
    const got = await everything({});
    expect(ids(got)).toEqual(ids(sorted(all)));
    const byId = new Map(got.map((c) => [c.id, c]));
    for (const e of all) {
      const c = byId.get(e.id)!;
      expect({
        module: c.module,
        status: c.status,
        tenant: c.tenant,
        apiKey: c.apiKey,
        subject: c.subject,
      }).toEqual({
        module: e.module,
        status: e.status,
        tenant: e.tenant,
        apiKey: e.apiKey,
        subject: e.subject,
      });
      expect(c.correlationId).toBe(e.correlationId);
      expect(c.traceId).toBe(e.traceId);
    }
  });

  const cases: [string, Record<string, string>, (e: Expected) => boolean][] = [
    ['module', { module: 'refunds' }, (e) => e.module === 'refunds'],
    ['one status', { status: 'rejected' }, (e) => e.status === 'rejected'],
    [
      'several statuses',
      { status: 'dead_lettered,cancelled' },
      (e) => ['dead_lettered', 'cancelled'].includes(e.status),
    ],
    ['pending statuses', { status: 'queued,processing' }, (e) => ['queued', 'processing'].includes(e.status)],
    ['processing', { status: 'processing' }, (e) => e.status === 'processing'],
    ['tenant', { tenant: 'prod-a/east' }, (e) => e.tenant === 'prod-a/east'],
    ['API key', { apiKey: 'prod-b' }, (e) => e.apiKey === 'prod-b'],
    ['subject (customer)', { subject: 'cust-2' }, (e) => e.subject === 'cust-2'],
    ['subject (order of refunds)', { subject: '' }, () => false], // replaced below
    [
      'time range',
      { from: iso(BASE + 5_000), to: iso(BASE + 12_000) },
      (e) => e.at >= iso(BASE + 5_000) && e.at < iso(BASE + 12_000),
    ],
    ['correlation id', { correlationId: '' }, () => false], // replaced below
    ['trace id (order)', { traceId: '' }, () => false], // replaced below
    ['trace id (refund)', { traceId: '' }, () => false], // replaced below
    [
      'error code (prefix)',
      { errorCode: 'payment declined' },
      (e) => !!e.errorCode?.startsWith('payment declined'),
    ],
    ['error code (refund code)', { errorCode: 'refund.' }, (e) => !!e.errorCode?.startsWith('refund.')],
    [
      'combined: API key + status + module',
      { apiKey: 'prod-a', status: 'completed,rejected', module: 'orders' },
      (e) => e.apiKey === 'prod-a' && ['completed', 'rejected'].includes(e.status) && e.module === 'orders',
    ],
    [
      'combined: subject + time range + status',
      {
        subject: 'cust-1',
        from: iso(BASE),
        to: iso(BASE + 15_000),
        status: 'completed,rejected,dead_lettered,cancelled',
      },
      (e) => e.subject === 'cust-1' && e.at >= iso(BASE) && e.at < iso(BASE + 15_000),
    ],
  ];

  it.each(cases.map((c) => [c[0], c] as const))('filters by %s', async (name, [, params, match]) => {
    let p = params;
    let m = match;
    if (name === 'subject (order of refunds)') {
      p = { subject: all[2]!.id };
      m = (e) => e.subject === all[2]!.id;
    } else if (name === 'correlation id') {
      p = { correlationId: all[11]!.correlationId };
      m = (e) => e.id === all[11]!.id;
    } else if (name === 'trace id (order)') {
      p = { traceId: all[17]!.traceId! };
      m = (e) => e.id === all[17]!.id;
    } else if (name === 'trace id (refund)') {
      p = { traceId: all[41]!.traceId!.toUpperCase() };
      m = (e) => e.id === all[41]!.id;
    }
    const want = sorted(all.filter(m));
    expect(want.length).toBeGreaterThan(0);
    expect(ids(await everything(p, admin, 4))).toEqual(ids(want));
  });

  it('answers 400 problems for bad filters, naming them', async () => {
    const bad: Record<string, string>[] = [
      { status: 'done' },
      { from: 'yesterday' },
      { traceId: 'xyz' },
      { module: 'nope' },
      { cursor: 'bm90IGEgY3Vyc29y' },
      { limit: '0' },
      { colour: 'red' },
    ];
    for (const params of bad) {
      const res = await search(params);
      expect(res.status, JSON.stringify(params)).toBe(400);
      expect(res.headers.get('content-type')).toContain('application/problem+json');
      expect((res.body as unknown as { code: string }).code).toBe('request.invalid');
    }
  });

  it('pages without gaps or repeats while commands are inserted before, between and after the pages', async () => {
    const before = sorted(all.filter((e) => e.status !== 'queued' && e.status !== 'processing'));
    let stop = false;
    let n = 1_000;
    const inserting = (async () => {
      while (!stop) {
        const i = n++;
        // Newer than everything, inside the seeded span (pages not yet read), and at a seeded row's exact time.
        const at = [iso(Date.now()), iso(BASE + (i % 20) * 1_000, 3), all[i % 40]!.at][i % 3]!;
        await seedOrder(i, { at, subject: 'cust-concurrent' });
      }
    })();
    const seen: CommandSummary[] = [];
    try {
      let cursor: string | null = null;
      do {
        const res = await search({
          status: 'completed,rejected,dead_lettered,cancelled',
          limit: '3',
          ...(cursor ? { cursor } : {}),
        });
        expect(res.status).toBe(200);
        seen.push(...res.body.commands);
        cursor = res.body.nextCursor;
      } while (cursor);
    } finally {
      stop = true;
      await inserting;
    }
    expect(n).toBeGreaterThan(1_005); // rows really were inserted while paging
    const got = ids(seen);
    expect(new Set(got).size).toBe(got.length); // no repeats
    const shown = new Set(got);
    expect(before.filter((e) => !shown.has(e.id))).toEqual([]); // no gaps
    // Still in the search's order.
    const keys = seen.map((c) => `${c.acceptedAt}`);
    expect(keys).toEqual([...keys].sort().reverse());
    await platform.rt.pool.query(`DELETE FROM orders WHERE customer_id = 'cust-concurrent'`);
  });

  it('shows a command decided while its job is still in Redis once, as decided', async () => {
    const pending = all.find((e) => e.status === 'queued')!;
    await platform.rt.pool.query(
      `INSERT INTO orders (order_id, customer_id, currency, total_cents, items, status, attempts, correlation_id,
                           accepted_at, accepted_by, tenant)
       VALUES ($1, $2, 'EUR', 100, '[]', 'completed', 1, $3, $4, 'prod-a', 'prod-a')`,
      [pending.id, pending.subject, pending.correlationId, pending.at],
    );
    try {
      const got = await everything({ subject: 'cust-pending' });
      expect(got.filter((c) => c.id === pending.id).map((c) => c.status)).toEqual(['completed']);
      expect(ids(await everything({ subject: 'cust-pending', status: 'queued' }))).not.toContain(pending.id);
    } finally {
      await platform.rt.pool.query(`DELETE FROM orders WHERE order_id = $1`, [pending.id]);
    }
  });
});

describe('with cancel and bulk actions (registered beside the search)', () => {
  it('a cancelled pending command reads as cancelled, and a bulk dry run counts what the search selects', async () => {
    const res = await request(`${platform.url}/v1/orders`, {
      method: 'POST',
      json: sampleOrder({ customerId: 'cust-cancel' }),
      headers: bearer(prodA),
    });
    const id = res.body.orderId as string;
    const dry = await request<{ count: number }>(`${platform.url}/v1/bulk-actions/dry-run`, {
      method: 'POST',
      json: { action: 'cancel', query: { subject: 'cust-cancel' } },
      headers: bearer(admin),
    });
    expect(dry.status, JSON.stringify(dry.body)).toBe(200);
    expect(dry.body.count).toBe(
      (await everything({ subject: 'cust-cancel', status: 'queued,processing' })).length,
    );
    expect(dry.body.count).toBe(1);
    const cancelled = await request(`${platform.url}/v1/orders/${id}/cancel`, {
      method: 'POST',
      headers: bearer(prodA),
    });
    expect(cancelled.status, JSON.stringify(cancelled.body)).toBe(200);
    const got = await everything({ subject: 'cust-cancel' }, prodA);
    expect(got.map((c) => [c.id, c.status])).toEqual([[id, 'cancelled']]);
    await platform.rt.pool.query(`DELETE FROM orders WHERE order_id = $1`, [id]); // not part of the seed the others expect
  });
});

describe('who sees what', () => {
  it("a producer key with a module's read scope sees its own commands only", async () => {
    const got = await everything({}, prodA);
    expect(ids(got)).toEqual(ids(sorted(all.filter((e) => e.apiKey === 'prod-a'))));
    // Its own filters still apply.
    expect(ids(await everything({ status: 'rejected' }, prodB))).toEqual(
      ids(sorted(all.filter((e) => e.apiKey === 'prod-b' && e.status === 'rejected'))),
    );
  });

  it("403 for another key's commands, and for a key with no searchable module's read scope", async () => {
    const other = await search({ apiKey: 'prod-b' }, prodA);
    expect(other.status).toBe(403);
    expect((other.body as unknown as { code: string }).code).toBe('auth.forbidden');
    expect((await search({}, hooksOnly)).status).toBe(403);
    expect((await search({ apiKey: 'prod-a' }, prodA)).status).toBe(200);
  });

  it('401 without a key', async () => {
    const res = await fetch(`${platform.url}/v1/commands`);
    expect(res.status).toBe(401);
  });
});
