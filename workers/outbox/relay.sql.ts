import type { PoolClient, Pool } from '../../shared/db/pool.ts';
import type { EventEnvelope } from '../../shared/domain/events.ts';

/** Claims unpublished rows; SKIP LOCKED lets several relays run side by side without blocking. */
export async function claimBatch(
  client: PoolClient,
  limit: number,
): Promise<{ id: number; envelope: EventEnvelope; trace_context: unknown }[]> {
  const { rows } = await client.query<{ id: number; envelope: EventEnvelope; trace_context: unknown }>({
    name: 'conveyor-claim-outbox',
    text: `SELECT id, envelope, trace_context FROM outbox WHERE published_at IS NULL ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED`,
    values: [limit],
  });
  return rows;
}

export async function markPublished(client: PoolClient, ids: readonly number[]): Promise<void> {
  await client.query({
    name: 'conveyor-mark-published',
    text: `UPDATE outbox SET published_at = now() WHERE id = ANY($1::bigint[])`,
    values: [ids],
  });
}

export async function outboxBacklog(pool: Pool): Promise<{ count: number; oldestAgeSeconds: number }> {
  const { rows } = await pool.query<{ count: number; oldest: number | null }>(
    `SELECT count(*)::int AS count, EXTRACT(EPOCH FROM now() - min(created_at))::float8 AS oldest
       FROM outbox WHERE published_at IS NULL`,
  );
  return { count: rows[0]?.count ?? 0, oldestAgeSeconds: rows[0]?.oldest ?? 0 };
}
