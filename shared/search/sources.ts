/**
 * Where each module's commands are searched: the write-model table of its decided commands (column
 * by column, as SQL expressions) and how its pending job's data (in Redis) reads as a
 * {@link CommandSummary}. Keyed by module name; a module without an entry keeps no searchable command
 * history (webhooks: deliveries are listed per endpoint, `GET /v1/webhooks/{id}/deliveries`).
 */
import { isUuid } from '../domain/ids.ts';

/** The pending part of a summary, from a job's data; null for data the module cannot read. */
export interface PendingFields {
  id: string;
  tenant: string | null;
  apiKey: string | null;
  subject: string | null;
  correlationId: string | null;
  acceptedAt: string | null;
}

export interface SearchSource {
  module: string;
  /** The write-model table (decided commands: completed, rejected, dead_lettered, cancelled). */
  table: string;
  /** Its primary key column, a uuid. */
  id: string;
  /** The acceptance time the sort and `from`/`to` use (NOT NULL in the table). */
  acceptedAt: string;
  decidedAt: string;
  status: string;
  tenant: string;
  /** The API key that sent it: a column, or an expression over the tenant (`<key>` or `<key>/<sub>`). */
  apiKey: string;
  subject: string;
  /** Whether the subject column is a uuid (then a non-uuid subject matches nothing, without a cast error). */
  subjectIsUuid: boolean;
  correlationId: string;
  /** The error text (a code first where the module stores one); `errorCode` matches its start. */
  error: string;
  /**
   * Statuses whose rows always hold an error, and the predicate saying so (its partial indexes'): added
   * when a search asks for those statuses only, so the planner can walk the failed rows alone.
   */
  failed?: { statuses: readonly string[]; predicate: string };
  /**
   * The command ids whose outbox events carry trace id `$n` (the outbox keeps the W3C trace context of
   * every event, migration 0009): a SQL array expression over parameter `param`.
   */
  traceIds(param: string): string;
  /** For a page's rows, (command id, trace id) from the outbox: SQL with `$1` = ids (text[]). */
  traceOf: string;
  pending(data: unknown, jobId: string | undefined): PendingFields | null;
}

/** The trace id of an outbox row: the 32 hex digits of its W3C `traceparent` (`00-<trace id>-<span id>-01`). */
export const OUTBOX_TRACE_ID = `substr(trace_context->>'traceparent', 4, 32)`;

const str = (v: unknown): string | null => (typeof v === 'string' && v.length > 0 ? v : null);
const keyOfTenant = (tenant: string | null): string | null => (tenant ? tenant.split('/')[0]! : null);

const orders: SearchSource = {
  module: 'orders',
  table: 'orders',
  id: 'order_id',
  acceptedAt: 'accepted_at',
  decidedAt: 'decided_at',
  status: 'status',
  tenant: 'tenant',
  apiKey: 'accepted_by',
  subject: 'customer_id',
  subjectIsUuid: false,
  correlationId: 'correlation_id',
  error: 'reason',
  // A rejected order holds its reason, a dead-lettered one its error (modules/orders/worker).
  failed: { statuses: ['rejected', 'dead_lettered'], predicate: 'reason IS NOT NULL' },
  // Order events are keyed by their order.
  traceIds: (p) =>
    `ARRAY(SELECT aggregate_id::uuid FROM outbox
            WHERE ${OUTBOX_TRACE_ID} = ${p} AND trace_context IS NOT NULL AND event_type LIKE 'order.%')`,
  traceOf: `SELECT DISTINCT ON (aggregate_id) aggregate_id AS id, ${OUTBOX_TRACE_ID} AS trace_id
              FROM outbox WHERE aggregate_id = ANY($1::text[]) AND trace_context IS NOT NULL
               AND event_type LIKE 'order.%'
             ORDER BY aggregate_id, id`,
  pending(data, jobId) {
    const d = (data ?? {}) as Record<string, unknown>;
    const order = (d.order ?? {}) as Record<string, unknown>;
    const id = isUuid(d.orderId) ? d.orderId : isUuid(jobId) ? jobId : null;
    if (!id) return null;
    return {
      id,
      tenant: str(d.tenant),
      apiKey: str(d.acceptedBy),
      subject: str(order.customerId),
      correlationId: str(d.correlationId),
      acceptedAt: str(d.acceptedAt),
    };
  },
};

const refunds: SearchSource = {
  module: 'refunds',
  table: 'refunds',
  id: 'refund_id',
  acceptedAt: 'requested_at',
  decidedAt: 'decided_at',
  status: 'status',
  tenant: 'tenant',
  // Refunds record the tenant only: its key is the part before a sub-tenant.
  apiKey: `split_part(tenant, '/', 1)`,
  subject: 'order_id',
  subjectIsUuid: true,
  correlationId: 'correlation_id',
  error: 'COALESCE(code, detail)',
  // Refund events are keyed by their order; the refund is in the payload.
  traceIds: (p) =>
    `ARRAY(SELECT (envelope->'payload'->>'refundId')::uuid FROM outbox
            WHERE ${OUTBOX_TRACE_ID} = ${p} AND trace_context IS NOT NULL AND event_type LIKE 'refund.%'
              AND envelope->'payload'->>'refundId' IS NOT NULL)`,
  traceOf: `SELECT DISTINCT ON (r.refund_id) r.refund_id::text AS id, ${OUTBOX_TRACE_ID} AS trace_id
              FROM refunds r JOIN outbox o ON o.aggregate_id = r.order_id::text
                AND o.envelope->'payload'->>'refundId' = r.refund_id::text AND o.trace_context IS NOT NULL
             WHERE r.refund_id = ANY($1::uuid[])
             ORDER BY r.refund_id, o.id`,
  pending(data, jobId) {
    const d = (data ?? {}) as Record<string, unknown>;
    const id = isUuid(d.refundId) ? d.refundId : isUuid(jobId) ? jobId : null;
    if (!id) return null;
    const tenant = str(d.tenant);
    return {
      id,
      tenant,
      apiKey: keyOfTenant(tenant),
      subject: str(d.orderId),
      correlationId: str(d.correlationId),
      acceptedAt: str(d.requestedAt),
    };
  },
};

/** Every searchable module, by name. */
export const SEARCH_SOURCES: ReadonlyMap<string, SearchSource> = new Map(
  [orders, refunds].map((s) => [s.module, s]),
);
