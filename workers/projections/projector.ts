import { createBatcher, runWithIsolation } from '../../shared/batch.ts';
import type { EventHandler } from '../../shared/bus/event-bus.ts';
import { withTransaction, type Pool, type PoolClient } from '../../shared/db/pool.ts';
import { EventTypes, type EventEnvelope } from '../../shared/domain/events.ts';
import type { Logger } from '../../shared/observability/logger.ts';
import { applyReadModels, claimInbox, type OrderViewRow, type StatsDelta } from './projections.sql.ts';

export const PROJECTOR_CONSUMER = 'projections';
/** Advisory lock serializing read-model rebuilds against live projection batches. */
export const REBUILD_LOCK_ID = 727_274_002;

const rank = { dead_lettered: 0, rejected: 1, completed: 1 } as const;

function toView(e: EventEnvelope): OrderViewRow {
  switch (e.type) {
    case EventTypes.orderPlaced:
      return {
        ...e.payload,
        status: 'completed',
        lastError: null,
        correlationId: e.correlationId,
        completedAt: e.payload.completedAt,
        updatedAt: e.occurredAt,
      };
    case EventTypes.orderRejected:
      return {
        ...e.payload,
        status: 'rejected',
        lastError: e.payload.reason,
        correlationId: e.correlationId,
        completedAt: e.payload.rejectedAt,
        updatedAt: e.occurredAt,
      };
    case EventTypes.orderDeadLettered:
      return {
        ...e.payload,
        status: 'dead_lettered',
        lastError: e.payload.error,
        correlationId: e.correlationId,
        completedAt: null,
        updatedAt: e.occurredAt,
      };
  }
}

function addDelta(map: Map<string, StatsDelta>, key: string, d: Partial<StatsDelta>): void {
  const cur = map.get(key) ?? { completed: 0, rejected: 0, deadLettered: 0, revenueCents: 0 };
  map.set(key, {
    completed: cur.completed + (d.completed ?? 0),
    rejected: cur.rejected + (d.rejected ?? 0),
    deadLettered: cur.deadLettered + (d.deadLettered ?? 0),
    revenueCents: cur.revenueCents + (d.revenueCents ?? 0),
  });
}

/**
 * Applies a batch of events in one transaction: inbox first (events seen before are skipped), then the
 * order view (one row per order, the strongest state wins) and stats deltas aggregated per row.
 */
export async function applyEvents(
  client: PoolClient,
  consumer: string,
  events: readonly EventEnvelope[],
): Promise<number> {
  // Shared with other projector batches, exclusive for a rebuild: live projection waits while the
  // read models are rebuilt (events queue up in the bus), then resumes; the inbox dedupes the overlap.
  await client.query('SELECT pg_advisory_xact_lock_shared($1)', [REBUILD_LOCK_ID]);
  const unique = [...new Map(events.map((e) => [e.eventId, e])).values()];
  const fresh = await claimInbox(
    client,
    consumer,
    unique.map((e) => e.eventId),
  );
  const views = new Map<string, OrderViewRow>();
  const daily = new Map<string, StatsDelta>();
  const customers = new Map<string, StatsDelta>();
  for (const e of unique) {
    if (!fresh.has(e.eventId)) continue;
    const view = toView(e);
    const prev = views.get(view.orderId);
    if (!prev || rank[view.status] >= rank[prev.status]) views.set(view.orderId, view);
    const currency = view.currency ?? 'XXX';
    const day = e.occurredAt.slice(0, 10);
    if (e.type === EventTypes.orderPlaced) {
      addDelta(daily, `${day}|${currency}`, { completed: 1, revenueCents: e.payload.totalCents });
      addDelta(customers, `${e.payload.customerId}|${currency}`, {
        completed: 1,
        revenueCents: e.payload.totalCents,
      });
    } else if (e.type === EventTypes.orderRejected) {
      addDelta(daily, `${day}|${currency}`, { rejected: 1 });
      addDelta(customers, `${e.payload.customerId}|${currency}`, { rejected: 1 });
    } else {
      addDelta(daily, `${day}|${currency}`, { deadLettered: 1 });
    }
  }
  await applyReadModels(client, [...views.values()], daily, customers);
  return fresh.size;
}

export interface ProjectorOptions {
  pool: Pool;
  logger: Logger;
  consumer?: string;
  batchSize: number;
  batchWaitMs: number;
  /** Test hook: called after a batch's transaction commits, before the bus acks (chaos tests kill here). */
  afterCommit?: (count: number) => Promise<void> | void;
}

/** The idempotent projection consumer, as an {@link EventHandler} any bus can drive. */
export function createProjector(options: ProjectorOptions): { handle: EventHandler; drain(): Promise<void> } {
  const consumer = options.consumer ?? PROJECTOR_CONSUMER;
  const log = options.logger.child({ component: 'projector', consumer });
  const batcher = createBatcher<EventEnvelope, void>({
    maxSize: options.batchSize,
    maxWaitMs: options.batchWaitMs,
    run: (events) =>
      runWithIsolation(events, async (batch) => {
        await withTransaction(options.pool, (client) => applyEvents(client, consumer, batch));
        await options.afterCommit?.(batch.length);
        return batch.map(() => undefined);
      }),
  });
  return {
    async handle(event, delivery) {
      await batcher.submit(event);
      log.info(
        {
          correlationId: event.correlationId,
          eventId: event.eventId,
          type: event.type,
          attempt: delivery.attempt,
        },
        'event projected',
      );
    },
    drain: () => batcher.drain(),
  };
}
