import type { Pool, PoolClient } from '../../shared/db/pool.ts';
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
  /**
   * Rebuild even though retention pruned events the read models were built from: what they hold of
   * those events (orders, refunds, their stats) is dropped. `--drop-history-older-than-outbox`.
   * @defaultValue false: such a rebuild is refused ({@link RebuildWouldLoseHistoryError}), nothing deleted.
   */
  dropHistoryOlderThanOutbox?: boolean;
}

/** What a rebuild would drop: the read models hold effects of events the outbox no longer has. */
export interface LostHistory {
  /** When retention first removed such an event since the last rebuild (null: only the inbox shows it). */
  prunedAt: Date | null;
  /** Events the inbox recorded as applied that the outbox no longer has (the inbox forgets too: a lower bound). */
  unreplayableEvents: number;
  /** The oldest event the outbox still holds (published), or null when it holds none. */
  outboxFrom: Date | null;
}

/** `projections:rebuild` refused: it would drop history. Nothing was deleted. */
export class RebuildWouldLoseHistoryError extends Error {
  override readonly name = 'RebuildWouldLoseHistoryError';
  constructor(readonly lost: LostHistory) {
    super(
      'refusing to rebuild the read models: the outbox no longer holds every event they were built from ' +
        `(retention pruned history${lost.prunedAt ? ` since ${lost.prunedAt.toISOString()}` : ''}; ` +
        `${lost.unreplayableEvents} event(s) recorded as applied are not in the outbox, and older ones the inbox ` +
        `forgot may be missing too; the outbox reaches back to ${lost.outboxFrom?.toISOString() ?? 'nothing'}). ` +
        'A rebuild would drop every order, refund and statistic older than that from every read model. ' +
        'Nothing was deleted. To rebuild anyway and lose that history, pass --drop-history-older-than-outbox.',
    );
  }
}

/** Same key as the pruner's lock (retention.sql.ts `withPruneLock`): no prune runs during a rebuild. */
const PRUNE_LOCK_KEY = `hashtext('conveyor-retention:' || current_schema())`;

async function lostHistory(client: PoolClient, consumer: string): Promise<LostHistory | undefined> {
  const { rows } = await client.query<{
    pruned_at: Date | null;
    unreplayable: number;
    outbox_from: Date | null;
  }>(
    `SELECT (SELECT history_pruned_at FROM projection_history) AS pruned_at,
            (SELECT count(*)::int FROM projection_inbox i WHERE i.consumer = $1 AND NOT EXISTS (
               SELECT 1 FROM outbox o WHERE o.event_id = i.event_id AND o.quarantined_at IS NULL)) AS unreplayable,
            (SELECT min(published_at) FROM outbox WHERE published_at IS NOT NULL AND quarantined_at IS NULL) AS outbox_from`,
    [consumer],
  );
  const r = rows[0]!;
  if (r.pruned_at === null && r.unreplayable === 0) return undefined;
  return { prunedAt: r.pruned_at, unreplayableEvents: r.unreplayable, outboxFrom: r.outbox_from };
}

/**
 * Rebuilds every module's read models from the events retained in the outbox, through the same idempotent
 * projection code as live traffic. One transaction: readers keep seeing the old read models (DELETE,
 * not TRUNCATE, so no lock blocks them) until the rebuilt ones commit; live projection pauses on the
 * rebuild lock meanwhile and resumes after, its overlap deduplicated by the inbox.
 *
 * Retention prunes the outbox (and the inbox): once it has removed an event the read models hold, a
 * replay cannot reproduce them. The rebuild then refuses — before deleting anything — unless
 * `dropHistoryOlderThanOutbox` says to drop that history. Retention waits while a rebuild runs.
 * @returns the number of events replayed.
 * @throws {RebuildWouldLoseHistoryError} when the outbox no longer reaches back as far as the read models.
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
    // The prune lock first, as the pruner takes it before the rebuild lock: no prune meanwhile.
    await client.query(`SELECT pg_advisory_xact_lock(${PRUNE_LOCK_KEY})`);
    await client.query('SELECT pg_advisory_xact_lock($1)', [REBUILD_LOCK_ID]);
    const lost = await lostHistory(client, consumer);
    if (lost && !options.dropHistoryOlderThanOutbox) throw new RebuildWouldLoseHistoryError(lost);
    if (lost) {
      options.logger.warn(
        { consumer, ...lost },
        'rebuilding without the history retention pruned from the outbox: the read models lose it',
      );
    }
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
      // The inbox is empty: every replayed event is applied once, however old (the horizon is for deliveries).
      await applyEvents(client, consumer, events, catalog, { ignoreHorizon: true });
      replayed += rows.length;
      after = rows[rows.length - 1]!.id;
    }
    // The read models are now exactly the retained outbox: nothing lost relative to it, until retention prunes again.
    await client.query('UPDATE projection_history SET history_pruned_at = NULL');
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
