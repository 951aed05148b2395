import { isUuid } from '../../../shared/domain/ids.ts';
import { withinCarrier } from '../../../shared/observability/tracing/trace-context.ts';
import { randomUUID } from 'node:crypto';
import { runWithIsolation, type Settled } from '../../../shared/batch.ts';
import type { Command, ModuleWorkerFactory } from '../../../shared/modules/module.ts';
import { RefundJobSchema, type RefundJob } from '../domain.ts';
import { RefundEventTypes } from '../events.ts';
import { refundProjection } from './projection.ts';
import { decideAndWriteRefund, type RefundOutcome } from './refunds.sql.ts';

function describe(data: unknown): { correlationId: string | null; subjectId: string | null } {
  const loose = (data ?? {}) as { orderId?: unknown; correlationId?: unknown };
  return {
    correlationId: typeof loose.correlationId === 'string' ? loose.correlationId : null,
    subjectId: isUuid(loose.orderId) ? loose.orderId : null,
  };
}

/**
 * The refunds module's worker side. Each refund is its own transaction (its order's row locked while it
 * is decided); a batch runs them a few at a time ({@link REFUND_TRANSACTIONS}), so refunds of different
 * orders do not wait on each other while a refund waiting on a busy order's lock holds one pool
 * connection, not the whole pool the other workers of the process share.
 */
/** Refund transactions one worker process runs at once. */
export const REFUND_TRANSACTIONS = 4;

export const refundsWorker: ModuleWorkerFactory = {
  commands(ctx) {
    return {
      describe,
      async handleBatch(commands: readonly Command<RefundJob>[]) {
        const now = new Date();
        const settled: Settled<RefundOutcome>[] = [];
        let next = 0;
        const lane = async () => {
          while (next < commands.length) {
            const i = next++;
            // In the command's own trace context: its statements and outbox row join its trace.
            const [outcome] = await runWithIsolation([commands[i]!], async ([c]) => [
              await withinCarrier(c!.trace, () => decideAndWriteRefund(ctx.pool, c!.job, c!.attempt, now)),
            ]);
            settled[i] = outcome!;
          }
        };
        await Promise.all(Array.from({ length: Math.min(REFUND_TRANSACTIONS, commands.length) }, lane));
        if (settled.some((s) => s.ok && s.value.status !== 'duplicate')) ctx.onOutboxAppended();
        return settled;
      },
      statusOf: (outcome: RefundOutcome) => outcome.status,
      async deadLettered(client, cmd) {
        const parsed = RefundJobSchema.safeParse(cmd.data);
        const loose = (cmd.data ?? {}) as { refundId?: unknown };
        const refundId = parsed.success
          ? parsed.data.refundId
          : isUuid(loose.refundId)
            ? loose.refundId
            : null;
        if (!refundId) return [];
        const job = parsed.success ? parsed.data : null;
        const error = cmd.error.message.slice(0, 1_000);
        if (job) {
          const written = await client.query(
            `INSERT INTO refunds (refund_id, order_id, amount_cents, reason, status, detail, attempts, correlation_id,
                                  requested_at, tenant)
             VALUES ($1, $2, $3, $4, 'dead_lettered', $5, $6, $7, $8, $9)
             ON CONFLICT (refund_id) DO NOTHING RETURNING refund_id`,
            [
              job.refundId,
              job.orderId,
              job.refund.amountCents,
              job.refund.reason ?? null,
              error,
              cmd.attempts,
              cmd.correlationId,
              job.requestedAt,
              job.tenant ?? null,
            ],
          );
          if (written.rowCount === 0) return []; // decided before: it stays so
        }
        const orderId = describe(cmd.data).subjectId;
        return [
          {
            eventId: randomUUID(),
            type: RefundEventTypes.deadLettered,
            version: 1,
            key: orderId ?? refundId,
            correlationId: cmd.correlationId,
            occurredAt: cmd.at.toISOString(),
            payload: {
              refundId,
              orderId,
              amountCents: job?.refund.amountCents ?? null,
              reason: job?.refund.reason ?? null,
              attempts: cmd.attempts,
              requestedAt: job?.requestedAt ?? null,
              ...(job?.tenant === undefined ? {} : { tenant: job.tenant }),
              error,
              deadLetterId: cmd.deadLetterId,
              deadLetteredAt: cmd.at.toISOString(),
            },
          },
        ];
      },
    };
  },
  projection: refundProjection,
};
