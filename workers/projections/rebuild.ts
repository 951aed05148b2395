import type { Pool } from '../../shared/db/pool.ts';
import type { EventEnvelope } from '../../shared/domain/events.ts';
import type { Logger } from '../../shared/observability/logger.ts';
import {
  applyEvents,
  loadEventCatalog,
  PROJECTOR_CONSUMER,
  REBUILD_LOCK_ID,
  type EventCatalog,
} from './projector.ts';

export interface RebuildOptions {
  pool: Pool;
  logger: Logger;
  consumer?: string;
  /** Events replayed per statement batch. */
  batchSize?: number;
  /** The modules whose read models are rebuilt. @defaultValue every registered module */
  catalog?: EventCatalog;
}

/**
 * Rebuilds every module's read models from the events retained in the outbox, through the same idempotent
 * projection code as live traffic. One transaction: readers keep seeing the old read models (DELETE,
 * not TRUNCATE, so no lock blocks them) until the rebuilt ones commit; live projection pauses on the
 * rebuild lock meanwhile and resumes after, its overlap deduplicated by the inbox.
 * @returns the number of events replayed.
 */
export async function rebuildReadModels(options: RebuildOptions): Promise<number> {
  const consumer = options.consumer ?? PROJECTOR_CONSUMER;
  const batchSize = options.batchSize ?? 1_000;
  const catalog = options.catalog ?? (await loadEventCatalog());
  const client = await options.pool.connect();
  let replayed = 0;
  try {
    await client.query('BEGIN');
    await client.query('SET LOCAL statement_timeout = 0');
    await client.query('SELECT pg_advisory_xact_lock($1)', [REBUILD_LOCK_ID]);
    for (const { projection } of catalog.projectors) {
      for (const table of projection.tables) await client.query(`DELETE FROM "${table}"`);
    }
    await client.query('DELETE FROM projection_inbox WHERE consumer = $1', [consumer]);
    let after = 0;
    for (;;) {
      const { rows } = await client.query<{ id: number; envelope: EventEnvelope }>(
        'SELECT id, envelope FROM outbox WHERE published_at IS NOT NULL AND quarantined_at IS NULL AND id > $1 ORDER BY id LIMIT $2',
        [after, batchSize],
      );
      if (rows.length === 0) break;
      // The same check as live projection: an event it would dead-letter as poison is skipped here too,
      // so rebuilt read models equal live ones.
      const events = rows.flatMap((r) => {
        try {
          return [catalog.check(r.envelope)];
        } catch (err) {
          options.logger.warn(
            { err, eventId: r.envelope.eventId },
            'rebuild skips an event live projection refuses',
          );
          return [];
        }
      });
      await applyEvents(client, consumer, events, catalog);
      replayed += rows.length;
      after = rows[rows.length - 1]!.id;
    }
    await client.query('COMMIT');
  } catch (err) {
    await client.query('ROLLBACK').catch(() => undefined);
    throw err;
  } finally {
    client.release();
  }
  options.logger.info({ replayed, consumer }, 'read models rebuilt from the outbox');
  return replayed;
}
