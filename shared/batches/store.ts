import { randomUUID } from 'node:crypto';
import type { Pool, PoolClient } from '../db/pool.ts';
import { insertOutbox } from '../db/outbox.sql.ts';
import type { EventEnvelope } from '../domain/events.ts';
import { BatchEventTypes, type BatchCompleted } from './events.ts';

/** What decided a batch item: the final states the batch counts (a cancelled item is decided too). */
export type BatchOutcome = 'completed' | 'rejected' | 'dead_lettered' | 'cancelled';

/** One decided item of a batch (its job data named `batchId`). */
export interface BatchDecision {
  batchId: string;
  /** The item's id in its module (an order id): one decision per item is counted. */
  itemId: string;
  outcome: BatchOutcome;
}

/** A batch's row as GET /v1/batches/{id} shows it. */
export interface BatchProgress {
  id: string;
  module: string;
  tenant: string | null;
  acceptedBy: string | null;
  total: number | null;
  completed: number;
  rejected: number;
  deadLettered: number;
  /** Items cancelled before they were decided (shared/commands/cancel.ts). */
  cancelled: number;
  createdAt: string;
  completedAt: string | null;
}

interface BatchRow {
  batch_id: string;
  module: string;
  tenant: string | null;
  accepted_by: string | null;
  correlation_id: string | null;
  total: number | null;
  completed: number;
  rejected: number;
  dead_lettered: number;
  cancelled: number;
  created_at: Date;
  completed_at: Date | null;
}

const progressOf = (r: BatchRow): BatchProgress => ({
  id: r.batch_id,
  module: r.module,
  tenant: r.tenant,
  acceptedBy: r.accepted_by,
  total: r.total,
  completed: r.completed,
  rejected: r.rejected,
  deadLettered: r.dead_lettered,
  cancelled: r.cancelled,
  createdAt: r.created_at.toISOString(),
  completedAt: r.completed_at ? r.completed_at.toISOString() : null,
});

/**
 * Stamps `completed_at` on those of `ids` whose every accepted item is now decided and appends their
 * `batch.completed` events, inside the caller's transaction, which must already hold the rows' locks
 * (it updated them): no other transaction can stamp them between this check and its commit, and one
 * already stamped (`completed_at IS NOT NULL`) is left alone — so each batch completes exactly once.
 * @returns the events appended (the caller wakes the relays after its commit).
 */
async function completeReady(client: PoolClient, ids: readonly string[]): Promise<EventEnvelope[]> {
  if (ids.length === 0) return [];
  const done = await client.query<BatchRow>(
    `UPDATE batches SET completed_at = clock_timestamp()
      WHERE batch_id = ANY($1::uuid[]) AND completed_at IS NULL AND total IS NOT NULL
        AND completed + rejected + dead_lettered + cancelled >= total
      RETURNING *`,
    [ids],
  );
  const events = done.rows.map((r): EventEnvelope => {
    const p = progressOf(r);
    const payload: BatchCompleted = {
      batchId: p.id,
      module: p.module,
      tenant: p.tenant,
      acceptedBy: p.acceptedBy,
      total: p.total ?? 0,
      completed: p.completed,
      rejected: p.rejected,
      deadLettered: p.deadLettered,
      cancelled: p.cancelled,
      createdAt: p.createdAt,
      completedAt: p.completedAt ?? new Date().toISOString(),
    };
    return {
      eventId: randomUUID(),
      type: BatchEventTypes.completed,
      version: 1,
      key: p.id,
      correlationId: r.correlation_id ?? `batch-${p.id}`,
      occurredAt: payload.completedAt,
      payload,
    };
  });
  await insertOutbox(client, events);
  return events;
}

/** What the API records once its batch's items are enqueued. */
export interface OpenBatch {
  batchId: string;
  module: string;
  /** Items accepted (enqueued) in this request: refused ones are not part of the batch. */
  accepted: number;
  tenant: string;
  acceptedBy: string;
  correlationId: string;
}

/**
 * Records a batch's total (the API, after its items were enqueued), in one transaction with the
 * completion check: the workers may have decided every item already. A retry of the request (same
 * Idempotency-Key, so the same batch id) that got more items accepted raises the total; it never
 * lowers it. Who posted it stays the first request's.
 * @returns whether a `batch.completed` was appended (wake the relays).
 */
export async function openBatch(pool: Pool, batch: OpenBatch): Promise<boolean> {
  const client = await pool.connect();
  try {
    await client.query('BEGIN');
    await client.query(
      `INSERT INTO batches (batch_id, module, accepted_by, tenant, correlation_id, total)
       VALUES ($1, $2, $3, $4, $5, $6)
       ON CONFLICT (batch_id) DO UPDATE
         SET total = GREATEST(COALESCE(batches.total, 0), EXCLUDED.total),
             accepted_by = COALESCE(batches.accepted_by, EXCLUDED.accepted_by),
             tenant = COALESCE(batches.tenant, EXCLUDED.tenant),
             correlation_id = COALESCE(batches.correlation_id, EXCLUDED.correlation_id)`,
      [batch.batchId, batch.module, batch.acceptedBy, batch.tenant, batch.correlationId, batch.accepted],
    );
    const events = await completeReady(client, [batch.batchId]);
    await client.query('COMMIT');
    return events.length > 0;
  } catch (err) {
    await client.query('ROLLBACK').catch(() => undefined);
    throw err;
  } finally {
    client.release();
  }
}

/**
 * Counts decided batch items inside the caller's transaction — the one that decides them — and appends
 * `batch.completed` for each batch this completes. Idempotent per item: a redelivered decision counts
 * nothing (`batch_items` has one row per item); a dead-lettered item decided again after a redrive moves
 * from `deadLettered` to its outcome, and its batch does not complete a second time. Race-free under
 * concurrent transactions: each batch row is updated with `SET n = n + k` (its row lock orders them), in
 * batch-id order (no deadlock between two transactions sharing batches), and the completion is stamped
 * under that lock ({@link completeReady}).
 * @returns the `batch.completed` events appended (the caller wakes the relays after its commit).
 */
export async function recordBatchDecisions(
  client: PoolClient,
  module: string,
  decisions: readonly BatchDecision[],
): Promise<EventEnvelope[]> {
  if (decisions.length === 0) return [];
  const sorted = [...decisions].sort((a, b) =>
    a.batchId !== b.batchId ? (a.batchId < b.batchId ? -1 : 1) : a.itemId < b.itemId ? -1 : 1,
  );
  const counted = await client.query<{
    batch_id: string;
    completed: number;
    rejected: number;
    dead_lettered: number;
    cancelled: number;
    undead: number;
  }>(
    `WITH recorded AS (
       INSERT INTO batch_items (batch_id, item_id, outcome)
       SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[])
       ON CONFLICT (batch_id, item_id) DO UPDATE SET outcome = EXCLUDED.outcome, decided_at = now()
         WHERE batch_items.outcome = 'dead_lettered' AND EXCLUDED.outcome <> 'dead_lettered'
       RETURNING batch_id, outcome, xmax::text <> '0' AS redecided
     )
     SELECT batch_id,
            count(*) FILTER (WHERE outcome = 'completed')::int AS completed,
            count(*) FILTER (WHERE outcome = 'rejected')::int AS rejected,
            count(*) FILTER (WHERE outcome = 'dead_lettered')::int AS dead_lettered,
            count(*) FILTER (WHERE outcome = 'cancelled')::int AS cancelled,
            count(*) FILTER (WHERE redecided)::int AS undead
       FROM recorded GROUP BY batch_id ORDER BY batch_id`,
    [sorted.map((d) => d.batchId), sorted.map((d) => d.itemId), sorted.map((d) => d.outcome)],
  );
  if (counted.rows.length === 0) return [];
  const rows = counted.rows;
  // A batch the API has not recorded yet is created here (its total NULL until the API records it).
  await client.query(
    `INSERT INTO batches AS b (batch_id, module, completed, rejected, dead_lettered, cancelled)
     SELECT * FROM unnest($1::uuid[], $2::text[], $3::int[], $4::int[], $5::int[], $6::int[]) ORDER BY 1
     ON CONFLICT (batch_id) DO UPDATE
       SET completed = b.completed + EXCLUDED.completed, rejected = b.rejected + EXCLUDED.rejected,
           dead_lettered = b.dead_lettered + EXCLUDED.dead_lettered, cancelled = b.cancelled + EXCLUDED.cancelled`,
    [
      rows.map((r) => r.batch_id),
      rows.map(() => module),
      rows.map((r) => r.completed),
      rows.map((r) => r.rejected),
      // A redecided item leaves the dead letters: its new outcome is counted above, its old one goes.
      rows.map((r) => r.dead_lettered - r.undead),
      rows.map((r) => r.cancelled),
    ],
  );
  return completeReady(
    client,
    rows.map((r) => r.batch_id),
  );
}

/** A batch's progress; undefined when there is none (or the API never recorded it). */
export async function readBatch(pool: Pool, id: string): Promise<BatchProgress | undefined> {
  const result = await pool.query<BatchRow>(
    'SELECT * FROM batches WHERE batch_id = $1 AND total IS NOT NULL',
    [id],
  );
  const row = result.rows[0];
  return row ? progressOf(row) : undefined;
}
