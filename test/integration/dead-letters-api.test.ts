import { OrdersQueues } from '../../modules/orders/queue.ts';
import { Queue } from 'bullmq';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../shared/config/config.ts';
import { createPgDeadLetterSink, type NewDeadLetter } from '../../shared/dead-letters/dead-letter.ts';
import { QueueNames } from '../../shared/queue/names.ts';
import { generateApiKey } from '../../shared/security/api-keys.ts';
import { isolatedEnv } from '../support/env.ts';
import { request } from '../support/http.ts';
import { startPlatform, type Platform } from '../support/platform.ts';
import { MODULES } from '../../modules/registry.ts';

// The API side of dead-letter operations: discard, bulk redrive with per-item results, and the audit
// log they write (`GET /v1/audit`). API only, no workers: redriven messages stay on their queues.
const ops = generateApiKey('ops', ['admin']);
const auth = { authorization: `Bearer ${ops.key}` };

let platform: Platform;
let orders: Queue;
let events: Queue;
let ordersDlq: Queue;
const url = (path: string) => `${platform.url}${path}`;
const statusOf = async (id: string) =>
  (
    await platform.rt.pool.query<{ status: string; resolved_by: string | null }>(
      'SELECT status, resolved_by FROM dead_letters WHERE id = $1',
      [id],
    )
  ).rows[0];

let seq = 0;
/** Records a dead letter as the order worker would (an order command), oldest first by `failedAt`. */
async function commandDeadLetter(over: Partial<NewDeadLetter> = {}): Promise<NewDeadLetter> {
  seq += 1;
  const jobId = `job-${seq}`;
  const orderId = `00000000-0000-4000-8000-${String(seq).padStart(12, '0')}`;
  const payload = {
    orderId,
    correlationId: `corr-dl-${seq}`,
    acceptedAt: new Date().toISOString(),
    order: { customerId: 'c-dl', currency: 'EUR', items: [{ sku: 's', quantity: 1, unitPriceCents: 100 }] },
  };
  const dl: NewDeadLetter = {
    id: `bullmq-orders-${jobId}`,
    transport: 'bullmq',
    origin: OrdersQueues.commands,
    kind: 'command',
    messageKey: jobId,
    payload: Buffer.from(JSON.stringify(payload)),
    headers: { 'job-name': 'place-order' },
    error: 'ledger offline',
    stack: null,
    attempts: 5,
    correlationId: payload.correlationId,
    subjectId: orderId,
    firstFailedAt: null,
    failedAt: new Date(Date.UTC(2026, 0, 1, 0, 0, seq)),
    ...over,
  };
  await createPgDeadLetterSink(platform.rt.pool).record(dl);
  return dl;
}

beforeAll(async () => {
  platform = await startPlatform(loadConfig(isolatedEnv({ API_KEYS: ops.entry }), { modules: MODULES }), {
    workers: [],
  });
  const connection = { connection: platform.rt.redis, prefix: platform.config.redis.queuePrefix };
  orders = new Queue(OrdersQueues.commands, connection);
  events = new Queue(QueueNames.events, connection);
  ordersDlq = new Queue(OrdersQueues.deadLetters, connection);
});
afterAll(async () => {
  for (const q of [ordersDlq, events, orders]) await q?.close();
  await platform?.close();
});

describe('dead-letter actions over the API', () => {
  it('discards a dead letter once: kept on record, removed from Bull Board’s copy, audited with the principal', async () => {
    const dl = await commandDeadLetter();
    await ordersDlq.add('dead-letter', { deadLetterId: dl.id }, { jobId: dl.id });

    const res = await request(url(`/v1/dead-letters/${dl.id}/discard`), {
      method: 'POST',
      json: { reason: 'duplicate of a manual refund' },
      headers: { ...auth, 'user-agent': 'ops-cli/1.0' },
    });
    expect(res.status).toBe(200);
    expect(res.body).toEqual({ id: dl.id, status: 'discarded' });
    expect(await statusOf(dl.id)).toEqual({ status: 'discarded', resolved_by: 'ops' });
    expect(await ordersDlq.getJob(dl.id)).toBeUndefined();
    // Once handled, neither a second discard nor a redrive does anything: 409, it exists.
    expect(
      (await request(url(`/v1/dead-letters/${dl.id}/discard`), { method: 'POST', headers: auth })).status,
    ).toBe(409);
    expect(
      (await request(url(`/v1/dead-letters/${dl.id}/redrive`), { method: 'POST', headers: auth })).status,
    ).toBe(409);
    expect(await orders.getJob(dl.messageKey!)).toBeUndefined();

    const audit = await request<{ entries: Record<string, unknown>[] }>(
      url('/v1/audit?action=dead_letter.discard'),
      { headers: auth },
    );
    expect(audit.status).toBe(200);
    expect(audit.body.entries).toHaveLength(1);
    expect(audit.body.entries[0]).toMatchObject({
      actor: 'ops',
      source: 'api',
      action: 'dead_letter.discard',
      target: dl.id,
      userAgent: 'ops-cli/1.0',
      ip: '127.0.0.1',
      detail: { transport: 'bullmq', origin: 'orders', reason: 'duplicate of a manual refund' },
    });
  });

  // Issue #20: a dead letter that exists but was already handled answered 404, as if unknown.
  it('answers 409 for a dead letter already handled, naming how, and 404 only for an unknown id', async () => {
    const dl = await commandDeadLetter();
    // Handled by someone else already (as a redrive from the console leaves it).
    await platform.rt.pool.query(
      `UPDATE dead_letters SET status = 'redriven', resolved_at = now(), resolved_by = 'alice' WHERE id = $1`,
      [dl.id],
    );

    const again = await request(url(`/v1/dead-letters/${dl.id}/redrive`), { method: 'POST', headers: auth });
    expect(again.status).toBe(409);
    expect(again.body).toMatchObject({ status: 409, code: 'dead_letter.not_pending' });
    expect(again.body.detail).toContain('already redriven');
    // Nothing was sent again, nothing changed on the row.
    expect(await orders.getJob(dl.messageKey!)).toBeUndefined();
    expect(await statusOf(dl.id)).toEqual({ status: 'redriven', resolved_by: 'alice' });

    const discard = await request(url(`/v1/dead-letters/${dl.id}/discard`), {
      method: 'POST',
      headers: auth,
    });
    expect(discard.status).toBe(409);
    expect(discard.body.detail).toContain('already redriven');

    const unknown = await request(url('/v1/dead-letters/bullmq-orders-never-was/redrive'), {
      method: 'POST',
      headers: auth,
    });
    expect(unknown.status).toBe(404);
    expect(unknown.body).toMatchObject({ code: 'resource.not_found' });
  });

  it('redrives many by filter and ids, answering one result per id', async () => {
    const a = await commandDeadLetter();
    const b = await commandDeadLetter();
    const done = await commandDeadLetter();
    await platform.rt.pool.query(`UPDATE dead_letters SET status = 'redriven' WHERE id = $1`, [done.id]);
    const event = await commandDeadLetter({
      id: 'bullmq-events-evt-1',
      origin: QueueNames.events,
      kind: 'event',
      messageKey: 'evt-1',
      subjectId: null,
      payload: Buffer.from('{"type":"order.placed"}'),
      headers: { 'event-type': 'order.placed', 'event-id': 'evt-1' },
    });
    const kafka = await commandDeadLetter({
      id: 'kafka-topic-0-42',
      transport: 'kafka',
      origin: 'conveyor.events',
      kind: 'event',
    });

    const res = await request<{ batchId: string; results: { id: string; status: string }[] }>(
      url('/v1/dead-letters/redrive'),
      {
        method: 'POST',
        headers: auth,
        json: {
          transport: 'bullmq',
          ids: [a.id, b.id, event.id, done.id, 'bullmq-orders-missing', kafka.id, a.id],
        },
      },
    );
    expect(res.status).toBe(200);
    expect(res.body.results).toEqual([
      { id: a.id, status: 'redriven' },
      { id: b.id, status: 'redriven' },
      { id: event.id, status: 'redriven' },
      { id: done.id, status: 'not_pending', handled: 'redriven' },
      { id: 'bullmq-orders-missing', status: 'not_found' },
      { id: kafka.id, status: 'skipped' }, // pending, but not on the requested transport
    ]);
    // Commands are back on `orders` under their original job id with their original data; the event on `events`.
    for (const dl of [a, b]) {
      const job = await orders.getJob(dl.messageKey!);
      expect(job?.data).toEqual(JSON.parse(dl.payload.toString('utf8')));
      expect((await statusOf(dl.id))?.status).toBe('redriven');
    }
    expect((await events.getJobs(['waiting', 'delayed', 'prioritized'])).map((j) => j.data.body)).toContain(
      '{"type":"order.placed"}',
    );
    expect((await statusOf(kafka.id))?.status).toBe('pending');

    const audit = await request<{
      entries: { action: string; target: string | null; detail: Record<string, unknown> }[];
    }>(url('/v1/audit?actor=ops&limit=100'), { headers: auth });
    const redrives = audit.body.entries.filter((e) => e.action === 'dead_letter.redrive');
    expect(redrives.map((e) => e.target).sort()).toEqual([a.id, b.id, event.id].sort());
    expect(redrives.every((e) => e.detail.batchId === res.body.batchId)).toBe(true);
    const bulk = audit.body.entries.find((e) => e.action === 'dead_letter.redrive_bulk');
    expect(bulk?.detail).toMatchObject({
      batchId: res.body.batchId,
      counts: { redriven: 3, not_pending: 1, not_found: 1, skipped: 1 },
    });
  });

  it('honours the limit, oldest first, and the origin filter', async () => {
    const older = await commandDeadLetter({ failedAt: new Date(Date.UTC(2025, 0, 1)) });
    const newer = await commandDeadLetter({ failedAt: new Date(Date.UTC(2025, 0, 2)) });
    const res = await request<{ results: { id: string; status: string }[] }>(
      url('/v1/dead-letters/redrive'),
      {
        method: 'POST',
        headers: auth,
        json: { origin: OrdersQueues.commands, limit: 1 },
      },
    );
    expect(res.status).toBe(200);
    expect(res.body.results).toEqual([{ id: older.id, status: 'redriven' }]);
    expect((await statusOf(newer.id))?.status).toBe('pending');
    const none = await request<{ results: unknown[] }>(url('/v1/dead-letters/redrive'), {
      method: 'POST',
      headers: auth,
      json: { origin: 'no-such-queue' },
    });
    expect(none.body.results).toEqual([]);
  });

  it('validates the bulk body and the audit cursor', async () => {
    const post = (json: unknown) =>
      request(url('/v1/dead-letters/redrive'), { method: 'POST', headers: auth, json });
    expect((await post({ limit: 1_001 })).status).toBe(400);
    expect((await post({ ids: Array.from({ length: 1_001 }, (_, i) => `id-${i}`) })).status).toBe(400);
    expect((await post({ ids: ['bad id with spaces'] })).status).toBe(400);
    expect((await post({ transport: 'smtp' })).status).toBe(400);
    expect((await post({ everything: true })).status).toBe(400);
    expect((await request(url('/v1/audit?cursor=%%%'), { headers: auth })).status).toBe(400);
    expect((await request(url('/v1/audit?cursor=LTE'), { headers: auth })).status).toBe(400); // "-1"
    expect((await request(url('/v1/audit'), { headers: { authorization: 'Bearer nope' } })).status).toBe(401);
  });

  it('pages the audit log newest first with a cursor', async () => {
    const seen: number[] = [];
    let cursor: string | null = null;
    let pages = 0;
    do {
      const res: { body: { entries: { id: string }[]; nextCursor: string | null } } = await request(
        url(`/v1/audit?limit=2${cursor ? `&cursor=${cursor}` : ''}`),
        { headers: auth },
      );
      expect(res.body.entries.length).toBeLessThanOrEqual(2);
      seen.push(...res.body.entries.map((e) => Number(e.id)));
      cursor = res.body.nextCursor;
      pages += 1;
    } while (cursor && pages < 50);
    const { rows } = await platform.rt.pool.query<{ id: number }>(
      'SELECT id FROM audit_log ORDER BY id DESC',
    );
    expect(rows.length).toBeGreaterThan(4);
    expect(seen).toEqual(rows.map((r) => Number(r.id)));
  });

  it('filters by subject (the order or refund a dead letter concerns); ?orderId= still works', async () => {
    const a = await commandDeadLetter();
    const b = await commandDeadLetter();
    for (const param of ['subjectId', 'orderId']) {
      const res = await request<{ deadLetters: { id: string; subjectId: string; orderId: string }[] }>(
        url(`/v1/dead-letters?${param}=${a.subjectId!}`),
        { headers: auth },
      );
      expect(res.status).toBe(200);
      expect(res.body.deadLetters.map((d) => [d.id, d.subjectId, d.orderId])).toEqual([
        [a.id, a.subjectId, a.subjectId],
      ]);
    }
    // A replica still on the previous release writes order_id only (rolling upgrade): found by subject too.
    await platform.rt.pool.query(
      `INSERT INTO dead_letters (id, transport, origin, kind, payload, error, attempts, order_id)
       VALUES ('bullmq-orders-old-release', 'bullmq', 'orders', 'command', '\\x7b7d', 'old', 1, 'old-subject')`,
    );
    const old = await request<{ deadLetters: { id: string; subjectId: string }[] }>(
      url('/v1/dead-letters?subjectId=old-subject'),
      { headers: auth },
    );
    expect(old.body.deadLetters.map((d) => [d.id, d.subjectId])).toEqual([
      ['bullmq-orders-old-release', 'old-subject'],
    ]);
    // The console's filter reads the same column: both rows have their own subject.
    const { rows } = await platform.rt.pool.query<{ id: string; subject_id: string; order_id: string }>(
      'SELECT id, subject_id, order_id FROM dead_letters WHERE id = ANY($1) ORDER BY id',
      [[a.id, b.id]],
    );
    expect(rows).toEqual(
      [a, b]
        .map((d) => ({ id: d.id, subject_id: d.subjectId, order_id: d.subjectId }))
        .sort((x, y) => x.id.localeCompare(y.id)),
    );
  });
});
