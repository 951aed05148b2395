/**
 * What the retention prune costs: fills an isolated schema's outbox with `rows` published events past
 * retention (realistic envelopes) beside a live backlog it must not touch, then prunes them the way
 * the workers do (batches of `batch` rows) and reports rows/s, the slowest batch (how long one
 * statement holds its row locks), WAL written per row, and the table's size before and after.
 *
 *   node --import tsx bench/prune.ts [rows=200000] [batch=5000]
 */
import { randomUUID } from 'node:crypto';
import { loadConfig } from '../shared/config/config.ts';
import { migrate } from '../shared/db/migrate.ts';
import { createPool } from '../shared/db/pool.ts';
import { isolatedEnv } from '../test/support/env.ts';
import { pruneBatch } from '../workers/maintenance/retention.sql.ts';
import { MODULES } from '../modules/registry.ts';

async function main(): Promise<void> {
  const rows = Number(process.argv[2] ?? 200_000);
  const batch = Number(process.argv[3] ?? 5_000);
  const config = loadConfig(isolatedEnv({ LOG_LEVEL: 'warn' }), { modules: MODULES });
  const pool = createPool({ ...config.database, poolMax: 2 });
  await migrate(pool, config.database.schema, MODULES);
  try {
    const envelope = (i: number) => ({
      eventId: randomUUID(),
      type: 'order.completed',
      version: 1,
      key: randomUUID(),
      correlationId: `bench-${i}`,
      occurredAt: new Date().toISOString(),
      payload: {
        customerId: `c-${i % 500}`,
        currency: 'EUR',
        totalCents: 2500,
        items: [{ sku: 'sku-1', quantity: 2, unitPriceCents: 1250 }],
      },
    });
    for (let i = 0; i < rows; i += 10_000) {
      const n = Math.min(10_000, rows - i);
      const envs = Array.from({ length: n }, (_, k) => envelope(i + k));
      await pool.query(
        `INSERT INTO outbox (event_id, event_type, event_version, aggregate_id, correlation_id, envelope, created_at, published_at)
         SELECT (e->>'eventId')::uuid, e->>'type', 1, e->>'key', e->>'correlationId', e, now() - interval '10 days', now() - interval '10 days'
           FROM unnest($1::jsonb[]) AS e`,
        [envs],
      );
    }
    // A live tail: recent and unpublished rows stay.
    await pool.query(
      `INSERT INTO outbox (event_id, event_type, event_version, aggregate_id, correlation_id, envelope, published_at)
       SELECT gen_random_uuid(), 'order.completed', 1, 'k', 'c', '{}', CASE WHEN g % 2 = 0 THEN now() END
         FROM generate_series(1, 1000) g`,
    );
    await pool.query('VACUUM ANALYZE outbox');
    const size = async () =>
      (await pool.query<{ b: string }>(`SELECT pg_total_relation_size('outbox')::bigint AS b`)).rows[0]!.b;
    const lsn = async () =>
      (await pool.query<{ l: string }>('SELECT pg_current_wal_lsn()::text AS l')).rows[0]!.l;
    const sizeBefore = Number(await size());
    const lsnBefore = await lsn();
    const started = process.hrtime.bigint();
    let deleted = 0;
    let slowestMs = 0;
    for (;;) {
      const t = process.hrtime.bigint();
      const n = await pruneBatch(pool, 'outbox', 168 * 3_600, batch);
      slowestMs = Math.max(slowestMs, Number(process.hrtime.bigint() - t) / 1e6);
      deleted += n;
      if (n < batch) break;
    }
    const seconds = Number(process.hrtime.bigint() - started) / 1e9;
    const wal = (
      await pool.query<{ b: string }>(
        `SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), $1::pg_lsn)::bigint AS b`,
        [lsnBefore],
      )
    ).rows[0]!.b;
    const left = (await pool.query<{ n: number }>('SELECT count(*)::int AS n FROM outbox')).rows[0]!.n;
    const sizeAfterDelete = Number(await size());
    await pool.query('VACUUM outbox');
    const sizeAfterVacuum = Number(await size());
    const mb = (b: number) => (b / 1_048_576).toFixed(1);
    console.log(
      [
        `pruned ${deleted} of ${rows} published rows past retention in ${seconds.toFixed(2)} s ` +
          `(${Math.round(deleted / seconds)} rows/s, batches of ${batch}, slowest batch ${slowestMs.toFixed(0)} ms)`,
        `WAL ${mb(Number(wal))} MB (${Math.round(Number(wal) / Math.max(deleted, 1))} bytes/row); rows left ${left} (expected 1000)`,
        `outbox ${mb(sizeBefore)} MB before, ${mb(sizeAfterDelete)} MB after the prune, ${mb(sizeAfterVacuum)} MB after VACUUM (space reused, not returned to the OS)`,
      ].join('\n'),
    );
  } finally {
    await pool.query(`DROP SCHEMA "${config.database.schema}" CASCADE`);
    await pool.end();
  }
}

await main();
