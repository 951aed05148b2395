import type { Pool } from '../../shared/db/pool.ts';
import type { Transport } from '../../shared/dead-letters/dead-letter.ts';

/** Most dead letters one bulk action handles (the API's bulk redrive has the same bound). */
export const BULK_MAX = 1_000;

/** Which pending dead letters a bulk action covers: the list's filters, frozen at confirmation. */
export interface BulkSelection {
  transport?: Transport | undefined;
  origin?: string | undefined;
  subjectId?: string | undefined;
  /** Only dead letters that failed at or before this one (the newest when the operator confirmed). */
  through?: { failedAt: string; id: string } | undefined;
}

const WHERE = `status = 'pending' AND ($1::text IS NULL OR transport = $1) AND ($2::text IS NULL OR origin = $2)
  AND ($3::text IS NULL OR subject_id = $3)
  AND ($4::timestamptz IS NULL OR (failed_at, id) <= ($4::timestamptz, $5::text))`;

const params = (s: BulkSelection) => [
  s.transport ?? null,
  s.origin ?? null,
  s.subjectId ?? null,
  s.through?.failedAt ?? null,
  s.through?.id ?? null,
];

/**
 * How many pending dead letters match (counted up to {@link BULK_MAX} + 1, so "more than" can be
 * said), and the newest of them: the confirmation freezes the selection there, so a dead letter that
 * arrives while the operator reads it is not swept up by the click.
 */
export async function previewSelection(
  pool: Pool,
  selection: BulkSelection,
): Promise<{ count: number; more: boolean; newest: { failedAt: string; id: string } | null }> {
  // failed_at as text: microseconds survive the round trip (an ISO string from a Date would drop them
  // and leave the newest row outside its own bound).
  const { rows } = await pool.query<{ count: number; failed_at: string | null; id: string | null }>(
    `WITH hit AS (SELECT failed_at, id FROM dead_letters WHERE ${WHERE}
                  ORDER BY failed_at DESC, id DESC LIMIT ${BULK_MAX + 1})
     SELECT (SELECT count(*)::int FROM hit) AS count, h.failed_at::text AS failed_at, h.id
       FROM (SELECT 1) one LEFT JOIN LATERAL (SELECT failed_at, id FROM hit LIMIT 1) h ON true`,
    params(selection),
  );
  const r = rows[0];
  const count = r?.count ?? 0;
  return {
    count: Math.min(count, BULK_MAX),
    more: count > BULK_MAX,
    newest: r?.failed_at && r.id ? { failedAt: r.failed_at, id: r.id } : null,
  };
}

/** The ids a confirmed bulk action covers, oldest first, at most {@link BULK_MAX}. */
export async function selectPending(pool: Pool, selection: BulkSelection): Promise<string[]> {
  const { rows } = await pool.query<{ id: string }>(
    `SELECT id FROM dead_letters WHERE ${WHERE} ORDER BY failed_at ASC, id ASC LIMIT ${BULK_MAX}`,
    params(selection),
  );
  return rows.map((r) => r.id);
}
