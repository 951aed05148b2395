import type { AuditEntry } from '../../shared/audit/audit-log.ts';
import type { Pool } from '../../shared/db/pool.ts';
import { fromRow, type DeadLetterRecord } from '../../shared/dead-letters/dead-letter.ts';

/**
 * The SQL behind an order's story page, one function per table. Every lookup is by key or index: the
 * write model and read model by primary key, dead letters by `order_id` or id, the inbox by its
 * primary key, the audit log by `target`, the outbox by `aggregate_id` (index of migration 0008).
 * Other command modules' events (refunds) appear under the same aggregate: their key is the order id.
 */

/** The order in the write model: its latest decision (a redrive after a dead letter overwrites it). */
export interface OrderRecord {
  orderId: string;
  customerId: string;
  currency: string;
  totalCents: number;
  items: unknown;
  status: 'completed' | 'rejected' | 'dead_lettered' | 'cancelled';
  reason: string | null;
  attempts: number;
  correlationId: string;
  acceptedAt: Date;
  /** The API key that posted it; null for a foreign producer's job (or an order from before the column). */
  acceptedBy: string | null;
  /** Who it was for (fairness): the key's id or `<key id>/<sub-tenant>`; null when its job named none. */
  tenant: string | null;
  decidedAt: Date;
}

export async function findOrder(pool: Pool, orderId: string): Promise<OrderRecord | null> {
  const { rows } = await pool.query<OrderRecord>(
    `SELECT order_id AS "orderId", customer_id AS "customerId", currency, total_cents::float8 AS "totalCents",
            items, status, reason, attempts, correlation_id AS "correlationId",
            accepted_at AS "acceptedAt", accepted_by AS "acceptedBy", tenant, decided_at AS "decidedAt"
       FROM orders WHERE order_id = $1::uuid`,
    [orderId],
  );
  return rows[0] ?? null;
}

/** Decisions of many orders at once (the dead-letter list's redrive outcomes). */
export async function findDecisions(
  pool: Pool,
  orderIds: readonly string[],
): Promise<Map<string, { status: OrderRecord['status']; decidedAt: Date }>> {
  if (orderIds.length === 0) return new Map();
  const { rows } = await pool.query<{ orderId: string; status: OrderRecord['status']; decidedAt: Date }>(
    `SELECT order_id AS "orderId", status, decided_at AS "decidedAt" FROM orders WHERE order_id = ANY($1::uuid[])`,
    [[...orderIds]],
  );
  return new Map(rows.map((r) => [r.orderId, { status: r.status, decidedAt: r.decidedAt }]));
}

/** One outbox row: an event a decision appended, and when the relay published it. */
export interface StoredEvent {
  eventId: string;
  type: string;
  correlationId: string;
  createdAt: Date;
  publishedAt: Date | null;
  /** The event's own payload fields worth showing (reason, error, dead letter id). */
  reason: string | null;
  error: string | null;
  deadLetterId: string | null;
}

export async function findEvents(pool: Pool, aggregateId: string): Promise<StoredEvent[]> {
  const { rows } = await pool.query<StoredEvent>(
    `SELECT event_id AS "eventId", event_type AS type, correlation_id AS "correlationId",
            created_at AS "createdAt", published_at AS "publishedAt",
            envelope->'payload'->>'reason' AS reason, envelope->'payload'->>'error' AS error,
            envelope->'payload'->>'deadLetterId' AS "deadLetterId"
       FROM outbox WHERE aggregate_id = $1 ORDER BY id`,
    [aggregateId],
  );
  return rows;
}

/** When a consumer group's projection applied an event (its read-model writes commit with this row). */
export interface InboxEntry {
  consumer: string;
  eventId: string;
  processedAt: Date;
}

/**
 * Inbox rows of these events for every consumer. The primary key is (consumer, event_id): the
 * recursive CTE walks the few distinct consumers through the index (a loose index scan), then each
 * lookup is a primary-key probe — never a scan of the inbox, which is kept forever.
 */
export async function findInbox(pool: Pool, eventIds: readonly string[]): Promise<InboxEntry[]> {
  if (eventIds.length === 0) return [];
  const { rows } = await pool.query<InboxEntry>(
    `WITH RECURSIVE consumers AS (
       SELECT min(consumer) AS consumer FROM projection_inbox
       UNION ALL
       SELECT (SELECT min(consumer) FROM projection_inbox WHERE consumer > c.consumer)
         FROM consumers c WHERE c.consumer IS NOT NULL
     )
     SELECT i.consumer, i.event_id AS "eventId", i.processed_at AS "processedAt"
       FROM consumers c JOIN projection_inbox i ON i.consumer = c.consumer AND i.event_id = ANY($1::uuid[])
      ORDER BY i.processed_at`,
    [[...eventIds]],
  );
  return rows;
}

/** The order's row in the read model `order_view`. */
export interface ReadModelRecord {
  status: string;
  attempts: number;
  lastError: string | null;
  updatedAt: Date;
  completedAt: Date | null;
}

export async function findOrderView(pool: Pool, orderId: string): Promise<ReadModelRecord | null> {
  const { rows } = await pool.query<ReadModelRecord>(
    `SELECT status, attempts, last_error AS "lastError", updated_at AS "updatedAt", completed_at AS "completedAt"
       FROM order_view WHERE order_id = $1::uuid`,
    [orderId],
  );
  return rows[0] ?? null;
}

/**
 * The order's dead letters: commands and Kafka/RabbitMQ events carry its id; a BullMQ event's dead
 * letter is keyed by its job id, which is the event id for a lone event (`bullmq-<queue>-<eventId>`).
 */
export async function findDeadLetters(
  pool: Pool,
  orderId: string,
  candidateIds: readonly string[],
): Promise<DeadLetterRecord[]> {
  const { rows } = await pool.query(
    `SELECT * FROM dead_letters WHERE subject_id = $1 OR id = ANY($2::text[]) ORDER BY failed_at`,
    [orderId, [...candidateIds]],
  );
  return rows.map(fromRow);
}

/** Operator actions on any of these targets (dead letter ids, `<queue>/<jobId>` of Bull Board), oldest first. */
export async function findActions(pool: Pool, targets: readonly string[]): Promise<AuditEntry[]> {
  if (targets.length === 0) return [];
  const { rows } = await pool.query<AuditEntry>(
    `SELECT id::float8 AS id, at, actor, role, source, action, target, detail, ip, user_agent AS "userAgent"
       FROM audit_log WHERE target = ANY($1::text[]) ORDER BY id LIMIT 200`,
    [[...targets]],
  );
  return rows;
}

/** The latest redrive (or failed redrive) of each dead letter, from the audit log. */
export async function lastRedrives(
  pool: Pool,
  deadLetterIds: readonly string[],
): Promise<Map<string, { action: string; at: Date; error: string | null }>> {
  if (deadLetterIds.length === 0) return new Map();
  const { rows } = await pool.query<{ target: string; action: string; at: Date; error: string | null }>(
    `SELECT DISTINCT ON (target) target, action, at, detail->>'error' AS error
       FROM audit_log
      WHERE target = ANY($1::text[]) AND action IN ('dead_letter.redrive', 'dead_letter.redrive_failed')
      ORDER BY target, id DESC`,
    [[...deadLetterIds]],
  );
  return new Map(rows.map((r) => [r.target, { action: r.action, at: r.at, error: r.error }]));
}

/** A customer's recent orders, from the read model's customer index (newest first). */
export interface CustomerOrder {
  orderId: string;
  status: string;
  currency: string | null;
  totalCents: number | null;
  acceptedAt: Date | null;
  updatedAt: Date;
}

export async function findCustomerOrders(
  pool: Pool,
  customerId: string,
  limit: number,
): Promise<CustomerOrder[]> {
  const { rows } = await pool.query<CustomerOrder>(
    `SELECT order_id AS "orderId", status, currency, total_cents::float8 AS "totalCents",
            accepted_at AS "acceptedAt", updated_at AS "updatedAt"
       FROM order_view WHERE customer_id = $1
      ORDER BY accepted_at DESC, order_id DESC LIMIT $2`,
    [customerId, limit],
  );
  return rows;
}
