import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Pool } from '../../shared/db/pool.ts';
import type { EventEnvelope } from '../../shared/domain/events.ts';
import { PoisonMessageError } from '../../shared/errors/domain.ts';
import { createPruner } from '../../workers/maintenance/pruner.ts';
import { createProjector, REBUILD_LOCK_ID } from '../../workers/projections/projector.ts';
import { dropSchema, migratedPool, testConfig, testLogger } from '../support/env.ts';

const config = testConfig();
let pool: Pool;

const hoursAgo = (h: number) => new Date(Date.now() - h * 3_600_000).toISOString();

/** A completed order's event: it adds one completed order and its total to the day's stats. */
function placed(occurredAt: string, totalCents: number): EventEnvelope {
  const orderId = randomUUID();
  return {
    eventId: randomUUID(),
    type: 'order.placed',
    version: 1,
    key: orderId,
    correlationId: `corr-${orderId.slice(0, 8)}`,
    occurredAt,
    payload: {
      orderId,
      customerId: 'inbox-retention',
      currency: 'EUR',
      totalCents,
      items: [{ sku: 's', quantity: 1, unitPriceCents: totalCents }],
      attempts: 1,
      acceptedAt: occurredAt,
      completedAt: occurredAt,
    },
  };
}

const stats = async () =>
  (
    await pool.query<{ completed: number; revenue: number }>(
      `SELECT completed_count::int AS completed, revenue_cents::int AS revenue
         FROM customer_stats WHERE customer_id = 'inbox-retention'`,
    )
  ).rows[0];
const inbox = async (ids: string[]) =>
  (
    await pool.query<{ id: string }>(
      'SELECT event_id::text AS id FROM projection_inbox WHERE event_id = ANY($1::uuid[]) ORDER BY 1',
      [ids],
    )
  ).rows.map((r) => r.id);

beforeAll(async () => {
  pool = await migratedPool(config);
});
afterAll(async () => {
  await dropSchema(pool, config.database.schema);
  await pool.end();
});

describe('projections inbox retention', () => {
  const retention = {
    outboxRetentionHours: 0,
    auditRetentionDays: 0,
    deadLetterRetentionDays: 0,
    inboxRetentionHours: 168,
    intervalMs: 3_600_000,
  };
  const delivery = { attempt: 1, transport: 'bullmq' } as const;

  it('waits for projection batches in flight before it forgets anything, and skips the round if they hold on', async () => {
    const projector = createProjector({ pool, logger: testLogger(), batchSize: 10, batchWaitMs: 5 });
    const old = placed(hoursAgo(300), 100);
    await projector.handle(old, delivery);
    // A live batch holding the rebuild lock (shared) may have read the old horizon: nothing is deleted under it.
    const batch = await pool.connect();
    try {
      await batch.query('BEGIN');
      await batch.query('SELECT pg_advisory_xact_lock_shared($1)', [REBUILD_LOCK_ID]);
      const pruner = createPruner(
        { pool, logger: testLogger() },
        { ...retention, inboxBarrierTimeoutMs: 200 },
      );
      await pruner.close(); // waits for its start-up prune, skipped too
      expect((await pruner.pruneOnce()).projection_inbox).toBe(0);
      expect(await inbox([old.eventId])).toEqual([old.eventId]);
    } finally {
      await batch.query('ROLLBACK');
      batch.release();
      await projector.drain();
    }
  });

  it('prunes rows past retention, and a late redelivery of a pruned event is refused (dead-lettered), never applied twice', async () => {
    await pool.query(`DELETE FROM customer_stats_shards WHERE customer_id = 'inbox-retention'`);
    const projector = createProjector({ pool, logger: testLogger(), batchSize: 10, batchWaitMs: 5 });
    const old = placed(hoursAgo(200), 1_000);
    const recent = placed(hoursAgo(1), 10);
    await projector.handle(old, delivery);
    await projector.handle(recent, delivery);
    expect(await stats()).toEqual({ completed: 2, revenue: 1_010 });

    const pruner = createPruner({ pool, logger: testLogger() }, retention);
    await pruner.close(); // waits for its start-up prune; then one more, not on a timer
    await pruner.pruneOnce();
    // Bounded: the inbox forgets the event that occurred before the retention, keeps the recent one.
    expect(await inbox([old.eventId, recent.eventId])).toEqual([recent.eventId]);

    // The late redelivery of the forgotten event (a redrive, a relay that re-publishes, a Kafka replay):
    // refused as poison — the delivery core dead-letters it — and counted once.
    const redelivered = projector.handle(old, { ...delivery, attempt: 2 });
    await expect(redelivered).rejects.toBeInstanceOf(PoisonMessageError);
    await expect(redelivered).rejects.toThrow(/before the projections' inbox horizon/);
    // A duplicate the inbox still holds is skipped as before.
    await projector.handle(recent, { ...delivery, attempt: 2 });
    expect(await stats()).toEqual({ completed: 2, revenue: 1_010 });
    expect(await inbox([old.eventId])).toEqual([]);

    // Refusal reaches no further than what the inbox forgot: an event older than the retention but
    // newer than the newest forgotten row is applied (once) — and one older than it is refused.
    const between = placed(new Date(Date.parse(old.occurredAt) + 60_000).toISOString(), 5);
    await projector.handle(between, delivery);
    await projector.handle(between, { ...delivery, attempt: 2 });
    await expect(projector.handle(placed(hoursAgo(400), 7), delivery)).rejects.toBeInstanceOf(
      PoisonMessageError,
    );
    expect(await stats()).toEqual({ completed: 3, revenue: 1_015 });
    await projector.drain();
  });
});
