import { randomInt } from 'node:crypto';
import type { ModuleProjection } from '../../../shared/modules/module.ts';
import { RefundEventTypes, type RefundEvent } from '../events.ts';

/** Shards of each refund stats row (as the order stats: concurrent batches rarely share a row lock). */
export const REFUND_STATS_SHARDS = 16;

interface RefundViewRow {
  refundId: string;
  orderId: string | null;
  customerId: string | null;
  currency: string | null;
  amountCents: number | null;
  reason: string | null;
  status: 'completed' | 'rejected' | 'dead_lettered' | 'cancelled';
  code: string | null;
  detail: string | null;
  attempts: number;
  correlationId: string;
  requestedAt: string | null;
  decidedAt: string | null;
  updatedAt: string;
}

function toView(e: RefundEvent): RefundViewRow {
  const base = { correlationId: e.correlationId, updatedAt: e.occurredAt };
  switch (e.type) {
    case RefundEventTypes.completed:
      return {
        ...e.payload,
        ...base,
        status: 'completed',
        code: null,
        detail: null,
        decidedAt: e.payload.completedAt,
      };
    case RefundEventTypes.rejected:
      return { ...e.payload, ...base, status: 'rejected', decidedAt: e.payload.rejectedAt };
    case RefundEventTypes.deadLettered:
      return {
        ...e.payload,
        ...base,
        customerId: null,
        currency: null,
        status: 'dead_lettered',
        code: null,
        detail: e.payload.error,
        decidedAt: null,
      };
    case RefundEventTypes.cancelled: {
      const { cancelReason, cancelledAt, cancelledBy: _by, ...snapshot } = e.payload;
      return {
        ...snapshot,
        ...base,
        customerId: null,
        currency: null,
        status: 'cancelled',
        code: null,
        detail: cancelReason,
        decidedAt: cancelledAt,
      };
    }
  }
}

const rank = { dead_lettered: 0, rejected: 1, completed: 1, cancelled: 1 } as const;

/**
 * `refund_view` (one row per refund; completed, rejected and cancelled are final, a dead-lettered refund may
 * still be decided after a redrive) and the completed refunds per day and per customer. Independent
 * of the order's own events: a refund projected before its order converges all the same (the order's
 * `refundedCents` is read from here when the order is read).
 */
export const refundProjection: ModuleProjection = {
  tables: ['refund_view', 'refund_stats_shards'],
  async apply(client, events) {
    const views = new Map<string, RefundViewRow>();
    const stats = new Map<string, { count: number; cents: number }>();
    const add = (dimension: string, key: string, currency: string, cents: number) => {
      const k = `${dimension}|${key}|${currency}`;
      const cur = stats.get(k) ?? { count: 0, cents: 0 };
      stats.set(k, { count: cur.count + 1, cents: cur.cents + cents });
    };
    for (const e of events as readonly RefundEvent[]) {
      const view = toView(e);
      const prev = views.get(view.refundId);
      if (!prev || rank[view.status] >= rank[prev.status]) views.set(view.refundId, view);
      if (e.type === RefundEventTypes.completed) {
        add('day', e.payload.completedAt.slice(0, 10), e.payload.currency, e.payload.amountCents);
        add('customer', e.payload.customerId, e.payload.currency, e.payload.amountCents);
      }
    }
    const rows = [...views.values()].sort((a, b) => (a.refundId < b.refundId ? -1 : 1));
    const statRows = [...stats.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    await client.query({
      name: 'conveyor-apply-refund-read-models',
      text: `WITH views AS (
         INSERT INTO refund_view (refund_id, order_id, customer_id, currency, amount_cents, reason, status, code, detail,
                                  attempts, correlation_id, requested_at, decided_at, updated_at)
         SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::bigint[], $6::text[], $7::text[],
                              $8::text[], $9::text[], $10::int[], $11::text[], $12::timestamptz[], $13::timestamptz[],
                              $14::timestamptz[])
         ON CONFLICT (refund_id) DO UPDATE
           SET order_id = COALESCE(EXCLUDED.order_id, refund_view.order_id),
               customer_id = COALESCE(EXCLUDED.customer_id, refund_view.customer_id),
               currency = COALESCE(EXCLUDED.currency, refund_view.currency),
               amount_cents = COALESCE(EXCLUDED.amount_cents, refund_view.amount_cents),
               reason = COALESCE(EXCLUDED.reason, refund_view.reason),
               status = EXCLUDED.status, code = EXCLUDED.code, detail = EXCLUDED.detail,
               attempts = EXCLUDED.attempts, correlation_id = EXCLUDED.correlation_id,
               requested_at = COALESCE(EXCLUDED.requested_at, refund_view.requested_at),
               decided_at = EXCLUDED.decided_at, updated_at = EXCLUDED.updated_at
           WHERE refund_view.status = 'dead_lettered'
       ), stats AS (
         INSERT INTO refund_stats_shards AS s (dimension, key, currency, refund_count, refunded_cents, shard)
         SELECT *, $20::smallint FROM unnest($15::text[], $16::text[], $17::text[], $18::bigint[], $19::bigint[])
         ON CONFLICT (dimension, key, currency, shard) DO UPDATE
           SET refund_count = s.refund_count + EXCLUDED.refund_count,
               refunded_cents = s.refunded_cents + EXCLUDED.refunded_cents
       )
       SELECT 1`,
      values: [
        rows.map((r) => r.refundId),
        rows.map((r) => r.orderId),
        rows.map((r) => r.customerId),
        rows.map((r) => r.currency),
        rows.map((r) => r.amountCents),
        rows.map((r) => r.reason),
        rows.map((r) => r.status),
        rows.map((r) => r.code),
        rows.map((r) => r.detail),
        rows.map((r) => r.attempts),
        rows.map((r) => r.correlationId),
        rows.map((r) => r.requestedAt),
        rows.map((r) => r.decidedAt),
        rows.map((r) => r.updatedAt),
        statRows.map(([k]) => k.split('|')[0]),
        statRows.map(([k]) => k.split('|').slice(1, -1).join('|')),
        statRows.map(([k]) => k.split('|').at(-1)),
        statRows.map(([, v]) => v.count),
        statRows.map(([, v]) => v.cents),
        randomInt(REFUND_STATS_SHARDS),
      ],
    });
  },
};
