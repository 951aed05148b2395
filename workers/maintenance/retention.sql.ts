import type { Pool } from '../../shared/db/pool.ts';

/** The tables with a retention, and what makes one of their rows old enough to go. */
export type RetainedTable = 'outbox' | 'audit_log' | 'dead_letters';

/**
 * One bounded batch per statement: a short transaction and few row locks each, however large the
 * backlog (a first prune after months, a retention shortened). `$1` is the age in seconds, `$2` the
 * batch size. Each inner query walks an index (0001 `outbox_published_at`, 0004 `audit_log_at`,
 * `dead_letters_handled`). Pending dead letters are never pruned, nor unpublished outbox rows.
 */
const PRUNE_BATCH: Record<RetainedTable, string> = {
  outbox: `DELETE FROM outbox WHERE id IN (
      SELECT id FROM outbox WHERE published_at < now() - make_interval(secs => $1) LIMIT $2)`,
  audit_log: `DELETE FROM audit_log WHERE id IN (
      SELECT id FROM audit_log WHERE at < now() - make_interval(secs => $1) LIMIT $2)`,
  dead_letters: `DELETE FROM dead_letters WHERE id IN (
      SELECT id FROM dead_letters WHERE status <> 'pending' AND resolved_at < now() - make_interval(secs => $1)
      LIMIT $2)`,
};

/** Deletes one batch of `table`'s rows older than `ageSeconds`; returns how many went. */
export async function pruneBatch(
  pool: Pool,
  table: RetainedTable,
  ageSeconds: number,
  batchSize: number,
): Promise<number> {
  const { rowCount } = await pool.query({
    name: `conveyor-prune-${table}`,
    text: PRUNE_BATCH[table],
    values: [ageSeconds, batchSize],
  });
  return rowCount ?? 0;
}

/**
 * Runs `fn` only if no other process of this schema holds the prune lock (session-level, on one
 * connection): replicas take turns instead of deleting the same rows at once. Returns undefined when
 * another one is pruning.
 */
export async function withPruneLock<T>(pool: Pool, fn: () => Promise<T>): Promise<T | undefined> {
  const client = await pool.connect();
  const key = `hashtext('conveyor-retention:' || current_schema())`;
  try {
    const { rows } = await client.query<{ locked: boolean }>(`SELECT pg_try_advisory_lock(${key}) AS locked`);
    if (!rows[0]?.locked) return undefined;
    try {
      return await fn();
    } finally {
      await client.query(`SELECT pg_advisory_unlock(${key})`);
    }
  } finally {
    client.release();
  }
}
