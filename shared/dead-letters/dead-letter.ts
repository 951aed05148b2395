import type { Pool } from '../db/pool.ts';

export type Transport = 'bullmq' | 'kafka' | 'rabbitmq' | 'sqs';

/** A message that could not be processed, from any transport, as operators see it. */
export interface DeadLetterRecord {
  /** Deterministic per original message so recording twice is harmless (e.g. `bullmq-orders-<jobId>`; no ":" so it can be a BullMQ job id). */
  id: string;
  transport: Transport;
  /** Queue or topic it came from, where a redrive sends it back. */
  origin: string;
  kind: 'command' | 'event';
  messageKey: string | null;
  /** The original bytes. */
  payload: Buffer;
  headers: Record<string, string>;
  error: string;
  stack: string | null;
  attempts: number;
  correlationId: string | null;
  /** What the command or event concerns (an order id, a refund id): its module's subject. */
  subjectId: string | null;
  firstFailedAt: Date | null;
  failedAt: Date;
  status: 'pending' | 'redriven' | 'discarded';
  redriveCount: number;
}

export type NewDeadLetter = Omit<DeadLetterRecord, 'status' | 'redriveCount' | 'failedAt'> & {
  failedAt?: Date;
};

/** Where every transport records its dead letters, so operators see them in one place. */
export interface DeadLetterSink {
  record(deadLetter: NewDeadLetter): Promise<void>;
}

interface Row {
  id: string;
  transport: Transport;
  origin: string;
  kind: 'command' | 'event';
  message_key: string | null;
  payload: Buffer;
  headers: Record<string, string>;
  error: string;
  stack: string | null;
  attempts: number;
  correlation_id: string | null;
  subject_id: string | null;
  order_id?: string | null;
  first_failed_at: Date | null;
  failed_at: Date;
  status: 'pending' | 'redriven' | 'discarded';
  redrive_count: number;
}

export function fromRow(r: Row): DeadLetterRecord {
  return {
    id: r.id,
    transport: r.transport,
    origin: r.origin,
    kind: r.kind,
    messageKey: r.message_key,
    payload: r.payload,
    headers: r.headers,
    error: r.error,
    stack: r.stack,
    attempts: r.attempts,
    correlationId: r.correlation_id,
    subjectId: r.subject_id ?? r.order_id ?? null,
    firstFailedAt: r.first_failed_at,
    failedAt: r.failed_at,
    status: r.status,
    redriveCount: r.redrive_count,
  };
}

export const INSERT_DEAD_LETTER_SQL = `
  INSERT INTO dead_letters (id, transport, origin, kind, message_key, payload, headers, error, stack, attempts,
                            correlation_id, subject_id, first_failed_at, failed_at)
  VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, COALESCE($14, now()))
  ON CONFLICT (id) DO UPDATE
    SET error = EXCLUDED.error, stack = EXCLUDED.stack, attempts = EXCLUDED.attempts, failed_at = EXCLUDED.failed_at,
        status = 'pending', resolved_at = NULL, resolved_by = NULL
    WHERE dead_letters.status <> 'pending'`;

export function deadLetterParams(d: NewDeadLetter): unknown[] {
  return [
    d.id,
    d.transport,
    d.origin,
    d.kind,
    d.messageKey,
    d.payload,
    JSON.stringify(d.headers),
    d.error.slice(0, 4_000),
    d.stack?.slice(0, 16_000) ?? null,
    d.attempts,
    d.correlationId,
    d.subjectId,
    d.firstFailedAt,
    d.failedAt ?? null,
  ];
}

/** A {@link DeadLetterSink} writing to the `dead_letters` table; recording the same id twice is harmless. */
export function createPgDeadLetterSink(pool: Pool): DeadLetterSink {
  return {
    async record(d) {
      await pool.query(INSERT_DEAD_LETTER_SQL, deadLetterParams(d));
    },
  };
}
