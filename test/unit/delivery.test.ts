import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { Pool } from '../../shared/db/pool.ts';
import { createPgDeadLetterSink, type NewDeadLetter } from '../../shared/dead-letters/dead-letter.ts';
import { createDeliveryCore, type Inbound, type TransportActions } from '../../shared/delivery/core.ts';
import { contentId, deadLetterId, storable } from '../../shared/delivery/dead-letter.ts';
import { CancelDelivery, classify, SnoozeDelivery, type Outcome } from '../../shared/delivery/outcome.ts';
import {
  judge,
  type DeliveryPolicy,
  type DeliveryState,
  type Verdict,
} from '../../shared/delivery/policy.ts';
import { DependencyUnavailableError, PoisonMessageError } from '../../shared/errors/domain.ts';
import { dropSchema, migratedPool, testConfig, testLogger } from '../support/env.ts';

/** An error as the pg driver or Node's net module throws it: a message and a `code`. */
function coded(message: string, code: string): Error {
  return Object.assign(new Error(message), { code });
}

describe('classify: what a thrown value means', () => {
  it('is done when nothing was thrown', () => {
    expect(classify(undefined)).toEqual({ kind: 'done' });
  });

  it('reads the typed outcomes a handler throws', () => {
    const snooze = new SnoozeDelivery('dependency down', 250);
    expect(classify(snooze)).toEqual({ kind: 'snooze', error: snooze, delayMs: 250 });
    const unnamed = new SnoozeDelivery('dependency down');
    expect(classify(unnamed)).toEqual({ kind: 'snooze', error: unnamed, delayMs: undefined });
    const cancel = new CancelDelivery('not wanted');
    expect(classify(cancel)).toEqual({ kind: 'cancel', error: cancel });
    const poison = new PoisonMessageError('never valid');
    expect(classify(poison)).toEqual({ kind: 'poison', error: poison });
    const unavailable = new DependencyUnavailableError('payment');
    expect(classify(unavailable)).toEqual({ kind: 'snooze', error: unavailable });
  });

  it.each([
    ['a refused connection', coded('connect ECONNREFUSED 127.0.0.1:5432', 'ECONNREFUSED')],
    ['PostgreSQL starting up (57P03)', coded('the database system is starting up', '57P03')],
    ['a connection failure (08006)', coded('connection failure', '08006')],
  ])('snoozes an outage: %s', (_what, error) => {
    expect(classify(error)).toMatchObject({ kind: 'snooze', error });
  });

  it('snoozes an AggregateError of refused connections (happy-eyeballs connect)', () => {
    const error = new AggregateError([
      coded('connect ECONNREFUSED ::1:5432', 'ECONNREFUSED'),
      coded('connect ECONNREFUSED 127.0.0.1:5432', 'ECONNREFUSED'),
    ]);
    expect(classify(error).kind).toBe('snooze');
    expect(classify(new AggregateError([new Error('nope'), coded('dup', '23505')])).kind).toBe('retry');
  });

  it('searches the cause chain', () => {
    const outage = new Error('projection failed', {
      cause: new Error('query failed', { cause: coded('connection failure', '08006') }),
    });
    expect(classify(outage).kind).toBe('snooze');
    const refused = new Error('projection failed', { cause: coded('duplicate key', '23505') });
    expect(classify(refused).kind).toBe('retry');
  });

  it('retries what the server refused (a unique violation) and anything unknown', () => {
    const duplicate = coded('duplicate key value violates unique constraint', '23505');
    expect(classify(duplicate)).toEqual({ kind: 'retry', error: duplicate });
    expect(classify(new Error('boom'))).toMatchObject({ kind: 'retry' });
    const thrownString = classify('a string');
    expect(thrownString.kind).toBe('retry');
    expect(thrownString.kind !== 'done' && thrownString.error).toBeInstanceOf(Error);
  });
});

describe('judge: the verdict for an outcome', () => {
  const policy: DeliveryPolicy = {
    maxAttempts: 3,
    backoffMs: 100,
    backoffMaxMs: 10_000,
    snoozeMs: 1_000,
    snoozeMaxMs: 8_000,
  };
  const error = new Error('failed');
  const retry: Outcome = { kind: 'retry', error };

  it('retries with backoff until the last attempt, then dead-letters', () => {
    const first = judge(retry, { attempt: 1 }, policy);
    expect(first).toMatchObject({ action: 'retry', nextAttempt: 2, error });
    expect(first.action === 'retry' && first.delayMs).toBeGreaterThanOrEqual(50);
    expect(first.action === 'retry' && first.delayMs).toBeLessThanOrEqual(100);
    const second = judge(retry, { attempt: 2, snoozes: 4 }, policy);
    expect(second).toMatchObject({ action: 'retry', nextAttempt: 3 });
    expect(second.action === 'retry' && second.delayMs).toBeGreaterThanOrEqual(100);
    expect(second.action === 'retry' && second.delayMs).toBeLessThanOrEqual(200);
    expect(judge(retry, { attempt: 3 }, policy)).toEqual({ action: 'dead-letter', attempts: 3, error });
    // A message past the limit (the limit was lowered meanwhile) is dead-lettered too.
    expect(judge(retry, { attempt: 5 }, policy)).toEqual({ action: 'dead-letter', attempts: 5, error });
  });

  it('snoozes without consuming an attempt, the delay growing with the snoozes up to snoozeMax', () => {
    const snooze: Outcome = { kind: 'snooze', error };
    const delays: number[] = [];
    for (let snoozes = 0; snoozes < 8; snoozes++) {
      // On the last attempt: a snooze is never a dead letter.
      const v = judge(snooze, { attempt: 3, snoozes }, policy);
      expect(v).toMatchObject({ action: 'snooze', snoozes: snoozes + 1, error });
      if (v.action !== 'snooze') throw new Error('not a snooze');
      const ceiling = Math.min(8_000, 1_000 * 2 ** snoozes);
      expect(v.delayMs).toBeGreaterThanOrEqual(ceiling / 2);
      expect(v.delayMs).toBeLessThanOrEqual(ceiling);
      delays.push(v.delayMs);
    }
    expect(Math.max(...delays)).toBeLessThanOrEqual(8_000);
    expect(judge(snooze, { attempt: 1 }, policy)).toMatchObject({ snoozes: 1 });
    // The handler's own delay wins.
    expect(judge({ kind: 'snooze', error, delayMs: 7 }, { attempt: 2, snoozes: 5 }, policy)).toEqual({
      action: 'snooze',
      delayMs: 7,
      snoozes: 6,
      error,
    });
  });

  it('dead-letters poison at once, on any attempt', () => {
    expect(judge({ kind: 'poison', error }, { attempt: 1 }, policy)).toEqual({
      action: 'dead-letter',
      attempts: 1,
      error,
    });
  });

  it('acknowledges a cancel, saying why, and a success', () => {
    expect(judge({ kind: 'cancel', error }, { attempt: 2 }, policy)).toEqual({
      action: 'ack',
      cancelled: error,
    });
    expect(judge({ kind: 'done' }, { attempt: 1 }, policy)).toEqual({ action: 'ack' });
  });
});

describe('deadLetterId', () => {
  it('is stable, readable for safe parts and names the transport first', () => {
    const parts = {
      transport: 'kafka',
      origin: 'conveyor.events',
      scope: 'audit',
      messageId: 'e-1',
    } as const;
    expect(deadLetterId(parts)).toBe('kafka-conveyor.events.audit-e-1');
    expect(deadLetterId({ ...parts })).toBe(deadLetterId(parts));
    expect(deadLetterId({ transport: 'bullmq', origin: 'events', messageId: 'e-1' })).toBe(
      'bullmq-events-e-1',
    );
    expect(deadLetterId({ ...parts, scope: 'other' })).not.toBe(deadLetterId(parts));
  });

  it('hashes unsafe parts: never a ":" (a BullMQ job id)', () => {
    const id = deadLetterId({ transport: 'bullmq', origin: 'orders', messageId: 'order:1/2 x' });
    expect(id).toMatch(/^bullmq-orders-h[0-9a-f]{32}$/);
    expect(id).not.toContain(':');
    const other = deadLetterId({ transport: 'bullmq', origin: 'orders', messageId: 'order:1/2 y' });
    expect(other).not.toBe(id);
    expect(deadLetterId({ transport: 'sqs', origin: 'q:1', messageId: 'm' })).not.toContain(':');
  });

  it('stays at most 200 characters, distinct for distinct long parts', () => {
    const long = (c: string) =>
      deadLetterId({ transport: 'rabbitmq', origin: 'o'.repeat(110), messageId: c.repeat(110) });
    for (const id of [long('a'), long('b')]) {
      expect(id.length).toBeLessThanOrEqual(200);
      expect(id).toMatch(/^rabbitmq-[A-Za-z0-9._-]+$/);
    }
    expect(long('a')).not.toBe(long('b'));
    expect(long('a')).toBe(long('a'));
  });

  it('names unreadable content by its bytes', () => {
    expect(contentId(Buffer.from('x'))).toBe(contentId('x'));
    expect(contentId('x')).toMatch(/^sha-[0-9a-f]{32}$/);
    expect(contentId('y')).not.toBe(contentId('x'));
    expect(contentId(null)).toBe(contentId(''));
  });
});

/** A dead letter of an event; `id` unique per test. */
function letter(id: string, overrides: Partial<NewDeadLetter> = {}): NewDeadLetter {
  return {
    id,
    transport: 'rabbitmq',
    origin: 'conveyor.events.projections',
    kind: 'event',
    messageKey: 'order-1',
    payload: Buffer.from('{"eventId":"e"}'),
    headers: { 'event-id': 'e' },
    error: 'failed',
    stack: null,
    attempts: 3,
    correlationId: 'corr-1',
    subjectId: 'order-1',
    firstFailedAt: null,
    ...overrides,
  };
}

describe('storable', () => {
  it('turns NUL and lone surrogates into U+FFFD in every text, keeps the payload’s bytes', () => {
    const payload = Buffer.from([0, 1, 2, 0]);
    const cleaned = storable(
      letter('x', {
        error: 'bad\u0000byte',
        stack: 'at \u0000',
        messageKey: 'k\u0000',
        correlationId: '\u0000c',
        subjectId: 's\ud800',
        headers: { 'h\u0000': 'v\u0000' },
        payload,
      }),
    );
    expect(cleaned).toMatchObject({
      error: 'bad\ufffdbyte',
      stack: 'at \ufffd',
      messageKey: 'k\ufffd',
      correlationId: '\ufffdc',
      subjectId: 's\ufffd',
      headers: { 'h\ufffd': 'v\ufffd' },
    });
    expect(cleaned.payload).toEqual(payload);
    expect(storable(letter('y', { stack: null, messageKey: null }))).toMatchObject({
      stack: null,
      messageKey: null,
    });
    // A valid surrogate pair is kept.
    expect(storable(letter('z', { error: 'ok 😀' })).error).toBe('ok 😀');
  });
});

type Call =
  | { op: 'ack' }
  | { op: 'handBack'; delayMs: number; next: Required<DeliveryState>; why: string }
  | { op: 'copy'; id: string; rowThere: boolean };

describe('createDeliveryCore with a PostgreSQL dead-letter sink', { timeout: 30_000 }, () => {
  const config = testConfig();
  const schema = config.database.schema;
  let pool: Pool;
  const policy: DeliveryPolicy = { maxAttempts: 3, backoffMs: 20, snoozeMs: 50, snoozeMaxMs: 200 };
  let verdicts: string[];
  let seq = 0;

  beforeAll(async () => {
    pool = await migratedPool(config);
  }, 60_000);

  afterAll(async () => {
    await dropSchema(pool, schema);
    await pool.end();
  });

  beforeEach(() => {
    verdicts = [];
  });

  const core = () =>
    createDeliveryCore(
      {
        sink: createPgDeadLetterSink(pool),
        logger: testLogger(),
        onVerdict: (action) => verdicts.push(action),
      },
      policy,
      'test-origin',
    );

  const rowOf = async (id: string) =>
    (
      await pool.query<{ error: string; attempts: number }>(
        'SELECT error, attempts FROM dead_letters WHERE id = $1',
        [id],
      )
    ).rows[0];

  /** An inbound message whose transport records every call, in order. */
  function inbound(
    state: DeliveryState,
    overrides: Partial<NewDeadLetter> = {},
    recordWith?: Inbound['recordWith'],
  ) {
    const id = `rabbitmq-test-origin-m${++seq}`;
    const calls: Call[] = [];
    const actions: TransportActions = {
      async ack() {
        calls.push({ op: 'ack' });
      },
      async handBack(delayMs, next, why) {
        calls.push({ op: 'handBack', delayMs, next, why });
      },
      async copyToDeadLetters(record) {
        calls.push({ op: 'copy', id: record.id, rowThere: (await rowOf(record.id)) !== undefined });
      },
    };
    const message: Inbound = {
      state,
      actions,
      deadLetter: (error, attempts) =>
        letter(id, { error: error.message, stack: error.stack ?? null, attempts, ...overrides }),
      recordWith,
    };
    return { id, calls, message };
  }

  it('acknowledges a success and a cancel; hands back a retry one attempt on and a snooze on the same attempt', async () => {
    const c = core();
    const done = inbound({ attempt: 1 });
    expect(await c.deliver(done.message, async () => 'ok')).toEqual({ action: 'ack' });
    expect(done.calls).toEqual([{ op: 'ack' }]);

    const cancelled = inbound({ attempt: 1 });
    const why = new CancelDelivery('not wanted');
    expect(await c.deliver(cancelled.message, () => Promise.reject(why))).toEqual({
      action: 'ack',
      cancelled: why,
    });
    expect(cancelled.calls).toEqual([{ op: 'ack' }]);

    const retried = inbound({ attempt: 2, snoozes: 1 });
    await c.deliver(retried.message, () => Promise.reject(new Error('transient')));
    expect(retried.calls).toEqual([
      { op: 'handBack', delayMs: expect.any(Number), next: { attempt: 3, snoozes: 1 }, why: 'retry' },
    ]);

    const snoozed = inbound({ attempt: 3, snoozes: 2 });
    await c.settleFailure(snoozed.message, coded('the database system is starting up', '57P03'));
    expect(snoozed.calls).toEqual([
      { op: 'handBack', delayMs: expect.any(Number), next: { attempt: 3, snoozes: 3 }, why: 'snooze' },
    ]);
    expect(verdicts).toEqual(['ack', 'cancelled', 'retry', 'snooze']);
    expect(await rowOf(retried.id)).toBeUndefined();
    expect(await rowOf(snoozed.id)).toBeUndefined();
  });

  it('dead-letters on the last attempt: the row first, then the native copy, then the ack', async () => {
    const m = inbound({ attempt: 3 });
    const verdict = await core().deliver(m.message, () => Promise.reject(new Error('still failing')));
    expect(verdict).toMatchObject({ action: 'dead-letter', attempts: 3 });
    expect(m.calls).toEqual([{ op: 'copy', id: m.id, rowThere: true }, { op: 'ack' }]);
    expect(await rowOf(m.id)).toEqual({ error: 'still failing', attempts: 3 });
    expect(verdicts).toEqual(['dead-letter']);
  });

  it('parks a dead letter it cannot record (the table is gone): same attempt, no copy, no ack', async () => {
    const m = inbound({ attempt: 3, snoozes: 1 });
    await pool.query(`ALTER TABLE "${schema}".dead_letters RENAME TO dead_letters_away`);
    let verdict: Verdict;
    try {
      verdict = await core().deliver(m.message, () => Promise.reject(new PoisonMessageError('never valid')));
    } finally {
      await pool.query(`ALTER TABLE "${schema}".dead_letters_away RENAME TO dead_letters`);
    }
    expect(verdict).toMatchObject({ action: 'snooze', snoozes: 2 });
    expect(verdict.action === 'snooze' && verdict.error.name).toBe('DeadLetterNotRecorded');
    expect(m.calls).toEqual([
      { op: 'handBack', delayMs: expect.any(Number), next: { attempt: 3, snoozes: 2 }, why: 'snooze' },
    ]);
    expect(verdicts).toEqual(['parked']);
    expect(await rowOf(m.id)).toBeUndefined();

    // Redelivered with the table back, still on its last attempt: dead-lettered.
    const again = { ...m.message, state: { attempt: 3, snoozes: 2 } };
    expect(await core().deliver(again, () => Promise.reject(new Error('fails again')))).toMatchObject({
      action: 'dead-letter',
      attempts: 3,
    });
    expect(m.calls.slice(1)).toEqual([{ op: 'copy', id: m.id, rowThere: true }, { op: 'ack' }]);
  });

  it('records the dead letter alone, made storable, when the full record refuses it for good', async () => {
    // The module's write meets a NUL, which PostgreSQL's text refuses (22021): no wait will change that.
    const recordWith = async (record: NewDeadLetter) => {
      await pool.query('SELECT $1::text', [record.error]);
    };
    const m = inbound({ attempt: 1 }, { headers: { 'event-id': 'e\u0000' } }, recordWith);
    const verdict = await core().deliver(m.message, () =>
      Promise.reject(new PoisonMessageError('bad \u0000 byte')),
    );
    expect(verdict).toMatchObject({ action: 'dead-letter', attempts: 1 });
    expect(m.calls).toEqual([{ op: 'copy', id: m.id, rowThere: true }, { op: 'ack' }]);
    const row = await rowOf(m.id);
    expect(row?.error).toMatch(/^bad \ufffd byte \(dead letter recorded alone: .*invalid byte sequence/);
    const { rows } = await pool.query<{ headers: Record<string, string> }>(
      'SELECT headers FROM dead_letters WHERE id = $1',
      [m.id],
    );
    expect(rows[0]?.headers).toEqual({ 'event-id': 'e\ufffd' });
  });

  it('parks when even the dead letter alone cannot be stored', async () => {
    const m = inbound({ attempt: 1 }, {}, async () => {
      throw coded('permission denied for table dead_letters', '42501');
    });
    await pool.query(`ALTER TABLE "${schema}".dead_letters RENAME TO dead_letters_away`);
    try {
      expect(await core().settle(m.message, { kind: 'poison', error: new Error('x') })).toMatchObject({
        action: 'snooze',
        snoozes: 1,
      });
    } finally {
      await pool.query(`ALTER TABLE "${schema}".dead_letters_away RENAME TO dead_letters`);
    }
    expect(m.calls).toEqual([
      { op: 'handBack', delayMs: expect.any(Number), next: { attempt: 1, snoozes: 1 }, why: 'snooze' },
    ]);
  });
});
