import { randomUUID } from 'node:crypto';
import { runWithIsolation, type Settled } from '../../../shared/batch.ts';
import { recordBatchDecisions, type BatchDecision } from '../../../shared/batches/store.ts';
import { withTransaction, type Pool } from '../../../shared/db/pool.ts';
import type { EventEnvelope } from '../../../shared/domain/events.ts';
import type { Command } from '../../../shared/modules/module.ts';
import { OrderEventTypes } from '../events.ts';
import { decideOrder, orderTotalCents, type Decision, type OrderJob } from '../domain.ts';
import { withCarrier } from '../../../shared/observability/tracing/trace-context.ts';
import { decideOrders, type OrderRow } from './orders.sql.ts';
import type { PaymentDecision } from './payment.ts';

/** An order job; `prepared` is the payment service's decision when the order needed one (a decline rejects it). */
export type OrderCommand = Command<OrderJob, PaymentDecision>;

export type OrderOutcome =
  | { status: 'completed' | 'rejected'; orderId: string; written: true }
  /** Already decided earlier (a redelivery): nothing written, nothing emitted. */
  | { status: 'duplicate'; orderId: string; written: false };

export interface OrderHandlerDeps {
  pool: Pool;
  supportedCurrencies: readonly string[];
  now?: () => Date;
  /** Called after a batch committed outbox rows: wakes the relays (see workers/outbox/wake.ts). */
  onOutboxAppended?: () => void;
}

/** Builds the write-model row and its event for one command, by the pure business rules. */
export function planOrder(
  cmd: OrderCommand,
  supportedCurrencies: readonly string[],
  now: Date,
): { row: OrderRow; event: EventEnvelope } {
  const { job, attempt } = cmd;
  const rules = decideOrder(job.order, supportedCurrencies);
  const decision: Decision =
    rules.kind === 'accept' && cmd.prepared && !cmd.prepared.approved
      ? {
          kind: 'reject',
          code: 'payment.declined',
          reason: `payment declined: ${cmd.prepared.reason ?? 'no reason given'}`,
        }
      : rules;
  const totalCents = orderTotalCents(job.order.items);
  const row: OrderRow = {
    orderId: job.orderId,
    customerId: job.order.customerId,
    currency: job.order.currency,
    totalCents,
    items: job.order.items,
    status: decision.kind === 'accept' ? 'completed' : 'rejected',
    reason: decision.kind === 'reject' ? decision.reason : null,
    attempts: attempt,
    correlationId: job.correlationId,
    acceptedAt: job.acceptedAt,
    acceptedBy: job.acceptedBy ?? null,
    tenant: job.tenant ?? null,
    replayOf: job.replayOf ?? null,
  };
  // Every object is written out field by field: on V8 a spread followed by new fields (`{ ...a, b }`)
  // builds a fresh hidden class per object: microseconds each, several per order.
  const payload: Record<string, unknown> = {
    orderId: job.orderId,
    customerId: job.order.customerId,
    currency: job.order.currency,
    totalCents,
    items: job.order.items,
    attempts: attempt,
    acceptedAt: job.acceptedAt,
  };
  // In the events only when the job names one (events stay as they were for jobs without).
  if (job.tenant !== undefined) payload['tenant'] = job.tenant;
  const at = now.toISOString();
  if (decision.kind === 'accept') payload['completedAt'] = at;
  else {
    payload['rejectedAt'] = at;
    payload['reason'] = decision.reason;
    payload['code'] = decision.code;
  }
  const event: EventEnvelope = {
    eventId: randomUUID(),
    version: 1,
    key: job.orderId,
    correlationId: job.correlationId,
    occurredAt: at,
    type: decision.kind === 'accept' ? OrderEventTypes.placed : OrderEventTypes.rejected,
    payload,
  };
  return { row, event };
}

/**
 * Decides a batch of order commands and commits their write-model rows and outbox events in ONE
 * transaction (exactly-once effect: a redelivered command finds its order decided and emits nothing).
 */
export function createOrderHandler(deps: OrderHandlerDeps) {
  const now = deps.now ?? (() => new Date());

  async function writeBatch(cmds: readonly OrderCommand[]): Promise<OrderOutcome[]> {
    const at = now();
    // The same order twice in one statement would conflict with itself: the first one wins.
    const seen = new Set<string>();
    const plans = cmds.map((cmd) => {
      const first = !seen.has(cmd.job.orderId);
      seen.add(cmd.job.orderId);
      if (!first) return undefined;
      const plan = planOrder(cmd, deps.supportedCurrencies, at);
      // The event's outbox row carries this command's own trace context, not the batch's.
      if (cmd.trace) plan.event = withCarrier(plan.event, cmd.trace);
      return plan;
    });
    // In order-id order: two batches that share an order (a redelivered stalled job) lock it alike.
    const decided = plans
      .flatMap((p) => (p ? [p] : []))
      .sort((a, b) => (a.row.orderId < b.row.orderId ? -1 : a.row.orderId > b.row.orderId ? 1 : 0));
    const rows = decided.map((p) => p.row);
    const events = decided.map((p) => p.event);
    const batchOf = new Map<string, string>();
    for (const cmd of cmds) if (cmd.job.batchId) batchOf.set(cmd.job.orderId, cmd.job.batchId);
    // Orders of a batch are counted there in the same transaction (exactly once per order, and the
    // batch completes in the transaction that decides its last order); the rest keep the one-statement write.
    const written =
      batchOf.size === 0
        ? await decideOrders(deps.pool, rows, events)
        : await withTransaction(deps.pool, async (client) => {
            const ids = await decideOrders(client, rows, events);
            const counted: BatchDecision[] = rows.flatMap((r) => {
              const batchId = batchOf.get(r.orderId);
              return batchId && ids.has(r.orderId) ? [{ batchId, itemId: r.orderId, outcome: r.status }] : [];
            });
            await recordBatchDecisions(client, 'orders', counted);
            return ids;
          });
    if (written.size > 0) deps.onOutboxAppended?.();
    return plans.map((p, i): OrderOutcome => {
      const orderId = cmds[i]!.job.orderId;
      if (p && written.has(orderId))
        return { status: p.row.status as 'completed' | 'rejected', orderId, written: true };
      return { status: 'duplicate', orderId, written: false };
    });
  }

  return {
    /** For a {@link createBatcher} `run`: one transaction, falling back to one per command on failure. */
    handleBatch: (cmds: readonly OrderCommand[]): Promise<Settled<OrderOutcome>[]> =>
      runWithIsolation(cmds, writeBatch),
  };
}
