import type { AuditActor, Queryable } from '../audit/audit-log.ts';
import type { Pool } from '../db/pool.ts';
import { SearchQuerySchema, type SearchQuery } from '../search/query.ts';
import type { BulkActionKind, SelectedItem } from './selection.ts';

/** The rows of `bulk_actions` and `bulk_action_items` (migration 0015) and the statements on them. */

export type BulkStatus = 'queued' | 'running' | 'completed' | 'failed' | 'cancelled';
export type ItemOutcome = 'succeeded' | 'skipped' | 'failed';

export interface BulkActionRecord {
  id: string;
  action: BulkActionKind;
  query: SearchQuery;
  asOf: Date;
  expected: number;
  status: BulkStatus;
  /** null: the runner's default. */
  ratePerSecond: number | null;
  snapshotCursor: string | null;
  snapshotDone: boolean;
  executingSince: Date | null;
  selected: number;
  touched: number;
  succeeded: number;
  skipped: number;
  failed: number;
  error: string | null;
  createdBy: AuditActor;
  createdAt: Date;
  startedAt: Date | null;
  finishedAt: Date | null;
  cancelRequestedAt: Date | null;
  leaseOwner: string | null;
  leaseExpiresAt: Date | null;
}

interface Row {
  id: string;
  action: BulkActionKind;
  query: unknown;
  as_of: Date;
  expected: number;
  status: BulkStatus;
  rate_per_second: number | null;
  snapshot_cursor: string | null;
  snapshot_done: boolean;
  executing_since: Date | null;
  selected: number;
  touched: number;
  succeeded: number;
  skipped: number;
  failed: number;
  error: string | null;
  created_by: AuditActor;
  created_at: Date;
  started_at: Date | null;
  finished_at: Date | null;
  cancel_requested_at: Date | null;
  lease_owner: string | null;
  lease_expires_at: Date | null;
}

export function fromRow(r: Row): BulkActionRecord {
  return {
    id: r.id,
    action: r.action,
    query: SearchQuerySchema.parse(r.query),
    asOf: r.as_of,
    expected: r.expected,
    status: r.status,
    ratePerSecond: r.rate_per_second,
    snapshotCursor: r.snapshot_cursor,
    snapshotDone: r.snapshot_done,
    executingSince: r.executing_since,
    selected: r.selected,
    touched: r.touched,
    succeeded: r.succeeded,
    skipped: r.skipped,
    failed: r.failed,
    error: r.error,
    createdBy: r.created_by,
    createdAt: r.created_at,
    startedAt: r.started_at,
    finishedAt: r.finished_at,
    cancelRequestedAt: r.cancel_requested_at,
    leaseOwner: r.lease_owner,
    leaseExpiresAt: r.lease_expires_at,
  };
}

/** The counts an audit row and a progress report carry. */
export function countsOf(a: BulkActionRecord) {
  return {
    expected: a.expected,
    selected: a.selected,
    touched: a.touched,
    succeeded: a.succeeded,
    skipped: a.skipped,
    failed: a.failed,
  };
}

export interface NewBulkAction {
  id: string;
  action: BulkActionKind;
  query: SearchQuery;
  asOf: Date;
  expected: number;
  ratePerSecond: number | null;
  createdBy: AuditActor;
}

export interface ItemResult extends SelectedItem {
  outcome: ItemOutcome;
  detail: string | null;
}

export function createBulkStore(pool: Pool) {
  return {
    async insert(db: Queryable, a: NewBulkAction): Promise<BulkActionRecord> {
      const { rows } = await db.query<Row>(
        `INSERT INTO bulk_actions (id, action, query, as_of, expected, rate_per_second, created_by)
         VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING *`,
        [
          a.id,
          a.action,
          JSON.stringify(a.query),
          a.asOf,
          a.expected,
          a.ratePerSecond,
          JSON.stringify(a.createdBy),
        ],
      );
      return fromRow(rows[0]!);
    },

    async get(id: string, db: Queryable = pool, lock = false): Promise<BulkActionRecord | null> {
      const { rows } = await db.query<Row>(
        `SELECT * FROM bulk_actions WHERE id = $1${lock ? ' FOR UPDATE' : ''}`,
        [id],
      );
      return rows[0] ? fromRow(rows[0]) : null;
    },

    /** Newest first; `before` is the keyset of the last row of the previous page. */
    async list(limit: number, before?: { createdAt: string; id: string }): Promise<BulkActionRecord[]> {
      const { rows } = await pool.query<Row>(
        `SELECT * FROM bulk_actions
          WHERE ($1::timestamptz IS NULL OR (created_at, id) < ($1::timestamptz, $2::uuid))
          ORDER BY created_at DESC, id DESC LIMIT $3`,
        [before?.createdAt ?? null, before?.id ?? null, limit],
      );
      return rows.map(fromRow);
    },

    /**
     * Takes the oldest unfinished action no live runner holds (never leased, or its lease expired: its
     * runner stopped or died) and leases it to `owner` for `leaseMs`.
     */
    async claim(owner: string, leaseMs: number): Promise<BulkActionRecord | null> {
      const { rows } = await pool.query<Row>(
        `UPDATE bulk_actions
            SET lease_owner = $1, lease_expires_at = now() + $2 * interval '1 millisecond',
                status = 'running', started_at = COALESCE(started_at, now())
          WHERE id = (SELECT id FROM bulk_actions
                       WHERE status IN ('queued', 'running')
                         AND (lease_expires_at IS NULL OR lease_expires_at < now())
                       ORDER BY created_at LIMIT 1 FOR UPDATE SKIP LOCKED)
          RETURNING *`,
        [owner, leaseMs],
      );
      return rows[0] ? fromRow(rows[0]) : null;
    },

    /**
     * Extends `owner`'s lease; null when it no longer holds a running action (taken over after its lease
     * expired, or cancelled and finished by an operator), else whether a cancel was requested.
     */
    async renew(id: string, owner: string, leaseMs: number): Promise<{ cancelRequested: boolean } | null> {
      const { rows } = await pool.query<{ cancel_requested_at: Date | null }>(
        `UPDATE bulk_actions SET lease_expires_at = now() + $3 * interval '1 millisecond'
          WHERE id = $1 AND lease_owner = $2 AND status = 'running' RETURNING cancel_requested_at`,
        [id, owner, leaseMs],
      );
      return rows[0] ? { cancelRequested: rows[0].cancel_requested_at !== null } : null;
    },

    /** Lets another runner take the action over at once (a clean stop). */
    async release(id: string, owner: string): Promise<void> {
      await pool.query(
        `UPDATE bulk_actions SET lease_owner = NULL, lease_expires_at = NULL WHERE id = $1 AND lease_owner = $2`,
        [id, owner],
      );
    },

    /** Adds one page of the selection (an item already there is not added twice) and moves the cursor. */
    async addSnapshotPage(
      id: string,
      items: readonly SelectedItem[],
      nextCursor: string | null,
    ): Promise<void> {
      await pool.query(
        `WITH added AS (
           INSERT INTO bulk_action_items (bulk_id, module, item_id)
           SELECT $1, m, i FROM unnest($2::text[], $3::text[]) AS t(m, i)
           ON CONFLICT DO NOTHING RETURNING 1)
         UPDATE bulk_actions
            SET selected = selected + (SELECT count(*) FROM added), snapshot_cursor = $4,
                snapshot_done = $5, executing_since = CASE WHEN $5 THEN now() ELSE NULL END
          WHERE id = $1`,
        [id, items.map((i) => i.module), items.map((i) => i.id), nextCursor, nextCursor === null],
      );
    },

    /** Items not acted upon yet, in key order after `after`. */
    async pending(id: string, after: SelectedItem | null, limit: number): Promise<SelectedItem[]> {
      const { rows } = await pool.query<{ module: string; item_id: string }>(
        `SELECT module, item_id FROM bulk_action_items
          WHERE bulk_id = $1 AND outcome IS NULL AND ($2::text IS NULL OR (module, item_id) > ($2::text, $3::text))
          ORDER BY module, item_id LIMIT $4`,
        [id, after?.module ?? null, after?.id ?? null, limit],
      );
      return rows.map((r) => ({ module: r.module, id: r.item_id }));
    },

    /**
     * Records outcomes and counts them in one statement: an item already recorded (by a runner that
     * lost its lease mid-way) is neither recorded nor counted again.
     */
    async record(id: string, results: readonly ItemResult[]): Promise<void> {
      if (results.length === 0) return;
      await pool.query(
        `WITH done AS (
           UPDATE bulk_action_items i SET outcome = v.outcome, detail = v.detail, done_at = now()
             FROM unnest($2::text[], $3::text[], $4::text[], $5::text[]) AS v(module, item_id, outcome, detail)
            WHERE i.bulk_id = $1 AND i.module = v.module AND i.item_id = v.item_id AND i.outcome IS NULL
           RETURNING i.outcome)
         UPDATE bulk_actions SET
           touched = touched + (SELECT count(*) FROM done),
           succeeded = succeeded + (SELECT count(*) FROM done WHERE outcome = 'succeeded'),
           skipped = skipped + (SELECT count(*) FROM done WHERE outcome = 'skipped'),
           failed = failed + (SELECT count(*) FROM done WHERE outcome = 'failed')
         WHERE id = $1`,
        [
          id,
          results.map((r) => r.module),
          results.map((r) => r.id),
          results.map((r) => r.outcome),
          results.map((r) => r.detail?.slice(0, 500) ?? null),
        ],
      );
    },

    /** Ends an action `owner` holds; null when it no longer does (someone else finished or took it). */
    async finish(
      db: Queryable,
      id: string,
      owner: string | null,
      status: 'completed' | 'failed' | 'cancelled',
      error: string | null = null,
    ): Promise<BulkActionRecord | null> {
      const { rows } = await db.query<Row>(
        `UPDATE bulk_actions SET status = $3, error = $4, finished_at = now(), lease_owner = NULL, lease_expires_at = NULL
          WHERE id = $1 AND status IN ('queued', 'running') AND ($2::text IS NULL OR lease_owner = $2)
          RETURNING *`,
        [id, owner, status, error?.slice(0, 1_000) ?? null],
      );
      return rows[0] ? fromRow(rows[0]) : null;
    },

    async requestCancel(db: Queryable, id: string): Promise<void> {
      await db.query(
        'UPDATE bulk_actions SET cancel_requested_at = COALESCE(cancel_requested_at, now()) WHERE id = $1',
        [id],
      );
    },

    /** The outcomes so far of an action's items: for tests and operators. */
    async items(id: string): Promise<ItemResult[]> {
      const { rows } = await pool.query<{
        module: string;
        item_id: string;
        outcome: ItemOutcome;
        detail: string | null;
      }>(
        `SELECT module, item_id, outcome, detail FROM bulk_action_items WHERE bulk_id = $1 ORDER BY module, item_id`,
        [id],
      );
      return rows.map((r) => ({ module: r.module, id: r.item_id, outcome: r.outcome, detail: r.detail }));
    },
  };
}
export type BulkStore = ReturnType<typeof createBulkStore>;
