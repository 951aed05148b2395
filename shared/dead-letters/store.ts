import type { Pool } from '../db/pool.ts';
import type { ReadPools } from '../db/read-pools.ts';
import { fromRow, type DeadLetterRecord, type Transport } from './dead-letter.ts';

export interface DeadLetterFilter {
  status?: 'pending' | 'redriven' | 'discarded';
  transport?: Transport;
  origin?: string;
  subjectId?: string;
  limit: number;
  /** Keyset cursor: failed_at and id of the last item of the previous page. */
  before?: { failedAt: string; id: string };
}

export interface DeadLetterStoreOptions {
  /**
   * Where `list` reads (the API's query side: a read replica, else the primary). `get` and `resolve`
   * always use `pool`: an action must see and change the row as it is now.
   */
  reads?: Pick<ReadPools, 'read'>;
}

/** Reads and resolves dead letters in the unified `dead_letters` table. */
export function createDeadLetterStore(pool: Pool, options: DeadLetterStoreOptions = {}) {
  const read = options.reads?.read ?? (<T>(fn: (p: Pool) => Promise<T>) => fn(pool));
  return {
    async list(filter: DeadLetterFilter): Promise<DeadLetterRecord[]> {
      const { rows } = await read((p) =>
        p.query(
          `SELECT * FROM dead_letters
          WHERE ($1::text IS NULL OR status = $1) AND ($2::text IS NULL OR transport = $2)
            AND ($3::text IS NULL OR origin = $3) AND ($4::text IS NULL OR subject_id = $4)
            AND ($5::timestamptz IS NULL OR (failed_at, id) < ($5::timestamptz, $6::text))
          ORDER BY failed_at DESC, id DESC LIMIT $7`,
          [
            filter.status ?? null,
            filter.transport ?? null,
            filter.origin ?? null,
            filter.subjectId ?? null,
            filter.before?.failedAt ?? null,
            filter.before?.id ?? null,
            filter.limit,
          ],
        ),
      );
      return rows.map(fromRow);
    },
    async get(id: string): Promise<DeadLetterRecord | null> {
      const { rows } = await pool.query('SELECT * FROM dead_letters WHERE id = $1', [id]);
      return rows[0] ? fromRow(rows[0]) : null;
    },
    /** Marks a pending dead letter resolved; false when it was not pending (already handled by someone). */
    async resolve(id: string, status: 'redriven' | 'discarded', by: string): Promise<boolean> {
      const { rowCount } = await pool.query(
        `UPDATE dead_letters SET status = $2, resolved_at = now(), resolved_by = $3,
                redrive_count = redrive_count + (CASE WHEN $2 = 'redriven' THEN 1 ELSE 0 END)
          WHERE id = $1 AND status = 'pending'`,
        [id, status, by],
      );
      return (rowCount ?? 0) > 0;
    },
  };
}
export type DeadLetterStore = ReturnType<typeof createDeadLetterStore>;
