import { randomUUID } from 'node:crypto';
import type { Pool, PoolClient } from '../../shared/db/pool.ts';
import type { EventEnvelope } from '../../shared/domain/events.ts';
import { isUuid } from '../../shared/domain/ids.ts';
import { StateConflictError } from '../../shared/errors/domain.ts';
import type { CommandStatus, CommandSummary } from '../../shared/search/query.ts';
import type { CancelWrite, CancelledCommand, CommandCancellation } from '../../shared/modules/module.ts';
import { RefundJobSchema } from './domain.ts';
import { RefundEventTypes } from './events.ts';

interface RefundSummaryRow {
  refund_id: string;
  order_id: string;
  status: CommandStatus;
  tenant: string | null;
  code: string | null;
  correlation_id: string;
  requested_at: Date;
  decided_at: Date;
}

const COLUMNS = 'refund_id, order_id, status, tenant, code, correlation_id, requested_at, decided_at';

const summaryOf = (r: RefundSummaryRow): CommandSummary => ({
  module: 'refunds',
  id: r.refund_id,
  status: r.status,
  tenant: r.tenant,
  // Refunds do not record the key that requested them; the tenant names it (`<key id>[/<sub>]`).
  apiKey: null,
  subject: r.order_id,
  correlationId: r.correlation_id,
  traceId: null,
  errorCode: r.code,
  acceptedAt: r.requested_at.toISOString(),
  decidedAt: r.decided_at.toISOString(),
});

async function find(db: Pool | PoolClient, id: string): Promise<CommandSummary | undefined> {
  const { rows } = await db.query<RefundSummaryRow>(`SELECT ${COLUMNS} FROM refunds WHERE refund_id = $1`, [
    id,
  ]);
  return rows[0] && summaryOf(rows[0]);
}

/**
 * Cancels a refund not yet decided: its `cancelled` row (from the job's data; never counted against its
 * order's total, which sums completed refunds only) and its `refund.cancelled` event. Inserted only when
 * the refund has no row: a decision there (or being written, whose uncommitted row this insert waits
 * for) wins, and the worker's own insert later leaves a cancelled row alone.
 */
async function cancel(client: PoolClient, cmd: CancelledCommand): Promise<CancelWrite> {
  const parsed = RefundJobSchema.safeParse(cmd.data);
  if (!parsed.success || parsed.data.refundId !== cmd.id) {
    throw new StateConflictError(
      'command.invalid',
      `refund ${cmd.id} is not a valid refund command: it will be dead-lettered, not cancelled`,
    );
  }
  const job = parsed.data;
  const at = cmd.at.toISOString();
  const written = await client.query<RefundSummaryRow>(
    `INSERT INTO refunds (refund_id, order_id, amount_cents, currency, reason, status, detail, attempts,
                          correlation_id, requested_at, tenant, decided_at)
     VALUES ($1, $2, $3, $4, $5, 'cancelled', $6, $7, $8, $9, $10, $11)
     ON CONFLICT (refund_id) DO NOTHING
     RETURNING ${COLUMNS}`,
    [
      job.refundId,
      job.orderId,
      job.refund.amountCents,
      job.refund.currency ?? null,
      job.refund.reason ?? null,
      cmd.reason,
      cmd.attempts,
      job.correlationId,
      job.requestedAt,
      job.tenant ?? null,
      at,
    ],
  );
  const row = written.rows[0];
  if (!row) {
    const existing = await find(client, cmd.id);
    if (!existing) throw new Error(`refund ${cmd.id}: insert skipped but no row found`);
    return { written: false, existing };
  }
  const event: EventEnvelope = {
    eventId: randomUUID(),
    type: RefundEventTypes.cancelled,
    version: 1,
    // Keyed by its order, as every refund event (ordered with the order's events).
    key: job.orderId,
    correlationId: job.correlationId,
    occurredAt: at,
    payload: {
      refundId: job.refundId,
      orderId: job.orderId,
      amountCents: job.refund.amountCents,
      reason: job.refund.reason ?? null,
      attempts: cmd.attempts,
      requestedAt: job.requestedAt,
      ...(job.tenant === undefined ? {} : { tenant: job.tenant }),
      cancelledAt: at,
      cancelledBy: cmd.actor,
      cancelReason: cmd.reason,
    },
  };
  return { written: true, summary: summaryOf(row), events: [event] };
}

/** The refunds module's side of a cancel (POST /v1/refunds/{refundId}/cancel). */
export const refundCancellation: CommandCancellation = { isId: isUuid, cancel, find };
