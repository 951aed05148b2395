import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Pool } from '../../shared/db/pool.ts';
import { createPruner } from '../../workers/maintenance/pruner.ts';
import { dropSchema, eventually, migratedPool, testConfig, testLogger } from '../support/env.ts';

const config = testConfig();
let pool: Pool;

const ids = async (sql: string) => (await pool.query<{ id: string }>(sql)).rows.map((r) => r.id).sort();

async function seed(): Promise<void> {
  const outbox = (label: string, publishedAgo: string | null) =>
    pool.query(
      `INSERT INTO outbox (event_id, event_type, event_version, aggregate_id, correlation_id, envelope, created_at, published_at)
       VALUES ($1, 'order.completed', 1, $2, 'corr', '{}', now() - interval '400 hours',
               CASE WHEN $3::interval IS NULL THEN NULL ELSE now() - $3::interval END)`,
      [randomUUID(), label, publishedAgo],
    );
  // Past the 168 h retention: five (pruned in batches of two); within it, or never published: kept.
  for (let i = 0; i < 5; i++) await outbox(`old-${i}`, '200 hours');
  await outbox('recent', '1 hour');
  await outbox('unpublished', null);

  const audit = (action: string, ago: string) =>
    pool.query(
      `INSERT INTO audit_log (at, actor, source, action) VALUES (now() - $2::interval, 'admin', 'api', $1)`,
      [action, ago],
    );
  await audit('old', '100 days');
  await audit('recent', '1 day');

  const deadLetter = (id: string, status: string, resolvedAgo: string | null) =>
    pool.query(
      `INSERT INTO dead_letters (id, transport, origin, kind, payload, error, attempts, failed_at, status, resolved_at)
       VALUES ($1, 'bullmq', 'orders', 'command', '\\x00', 'boom', 1, now() - interval '90 days', $2,
               CASE WHEN $3::interval IS NULL THEN NULL ELSE now() - $3::interval END)`,
      [id, status, resolvedAgo],
    );
  await deadLetter('pending-old', 'pending', null);
  await deadLetter('redriven-old', 'redriven', '40 days');
  await deadLetter('discarded-old', 'discarded', '31 days');
  await deadLetter('discarded-recent', 'discarded', '2 days');
}

beforeAll(async () => {
  pool = await migratedPool(config);
});
afterAll(async () => {
  await dropSchema(pool, config.database.schema);
  await pool.end();
});

describe('retention', () => {
  const retention = { outboxRetentionHours: 168, auditRetentionDays: 90, deadLetterRetentionDays: 30 };

  it('skips the prune while another process of the deployment holds the prune lock', async () => {
    await seed();
    const other = await pool.connect();
    try {
      await other.query(`SELECT pg_advisory_lock(hashtext('conveyor-retention:' || current_schema()))`);
      const pruner = createPruner({ pool, logger: testLogger() }, { ...retention, intervalMs: 3_600_000 });
      expect(await pruner.pruneOnce()).toEqual({});
      await pruner.close();
      expect((await pool.query('SELECT count(*)::int AS n FROM outbox')).rows[0].n).toBe(7);
    } finally {
      await other.query(`SELECT pg_advisory_unlock_all()`);
      other.release();
    }
  });

  it('prunes, from its start, only what is past retention: published events, old audit rows, handled dead letters', async () => {
    const pruner = createPruner(
      { pool, logger: testLogger() },
      { ...retention, batchSize: 2, intervalMs: 3_600_000 },
    );
    try {
      await eventually(
        async () => (await pool.query(`SELECT count(*)::int AS n FROM outbox`)).rows[0].n === 2,
        { what: 'the outbox pruned' },
      );
      await eventually(async () => (await ids('SELECT id::text FROM dead_letters')).length === 2, {
        what: 'handled dead letters pruned',
      });
      expect(await ids(`SELECT aggregate_id AS id FROM outbox`)).toEqual(['recent', 'unpublished']);
      expect(await ids(`SELECT action AS id FROM audit_log`)).toEqual(['recent']);
      expect(await ids(`SELECT id FROM dead_letters`)).toEqual(['discarded-recent', 'pending-old']);
    } finally {
      await pruner.close();
    }
  });
});
