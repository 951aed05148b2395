import type { PoolClient, Pool } from '../../shared/db/pool.ts';
import {
  deadLetterParams,
  INSERT_DEAD_LETTER_SQL,
  type DeadLetterSink,
  type NewDeadLetter,
} from '../../shared/dead-letters/dead-letter.ts';
import { recordDeadLetter } from '../../shared/delivery/dead-letter.ts';
import type { EventEnvelope } from '../../shared/domain/events.ts';

/** A claimed outbox row: the event and the trace context of the command that wrote it. */
export interface OutboxRow {
  id: number;
  envelope: EventEnvelope;
  trace_context: unknown;
}

/**
 * Claims unpublished rows; SKIP LOCKED lets several relays run side by side without blocking. A
 * quarantined row is marked published too (see {@link markQuarantined}): it is never claimed again.
 */
export async function claimBatch(client: PoolClient, limit: number): Promise<OutboxRow[]> {
  const { rows } = await client.query<OutboxRow>({
    name: 'conveyor-claim-outbox',
    text: `SELECT id, envelope, trace_context FROM outbox WHERE published_at IS NULL ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED`,
    values: [limit],
  });
  return rows;
}

export async function markPublished(client: PoolClient, ids: readonly number[]): Promise<void> {
  if (ids.length === 0) return;
  await client.query({
    name: 'conveyor-mark-published',
    text: `UPDATE outbox SET published_at = now() WHERE id = ANY($1::bigint[])`,
    values: [ids],
  });
}

/**
 * Marks rows the bus refused for good: published (so no relay claims them again, and neither the
 * backlog nor retention treats them as stuck) and quarantined (their event is a dead letter, origin
 * `outbox`, recorded in the same transaction by {@link recordQuarantined}).
 */
export async function markQuarantined(client: PoolClient, ids: readonly number[]): Promise<void> {
  if (ids.length === 0) return;
  await client.query({
    name: 'conveyor-mark-quarantined',
    text: `UPDATE outbox SET published_at = now(), quarantined_at = now() WHERE id = ANY($1::bigint[])`,
    values: [ids],
  });
}

/**
 * Records a quarantined event's dead letter in the relay's transaction — the core's one record path
 * (`recordDeadLetter`: a row it cannot store is recorded again made storable; an outage throws, and
 * the relay rolls the whole batch back). Each try runs under a savepoint, so a refused insert leaves
 * the transaction usable for the next.
 */
export async function recordQuarantined(client: PoolClient, record: NewDeadLetter): Promise<void> {
  const sink: DeadLetterSink = {
    async record(d) {
      await client.query('SAVEPOINT quarantine');
      try {
        await client.query(INSERT_DEAD_LETTER_SQL, deadLetterParams(d));
      } catch (err) {
        await client.query('ROLLBACK TO SAVEPOINT quarantine').catch(() => undefined);
        throw err;
      }
      await client.query('RELEASE SAVEPOINT quarantine');
    },
  };
  await recordDeadLetter(sink, record);
}

export async function outboxBacklog(pool: Pool): Promise<{ count: number; oldestAgeSeconds: number }> {
  const { rows } = await pool.query<{ count: number; oldest: number | null }>(
    `SELECT count(*)::int AS count, EXTRACT(EPOCH FROM now() - min(created_at))::float8 AS oldest
       FROM outbox WHERE published_at IS NULL`,
  );
  return { count: rows[0]?.count ?? 0, oldestAgeSeconds: rows[0]?.oldest ?? 0 };
}
