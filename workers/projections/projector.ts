import type { ModuleDefinition, ModuleProjection } from '../../modules/module.ts';
import { MODULES } from '../../modules/registry.ts';
import { createBatcher, runWithIsolation } from '../../shared/batch.ts';
import { context, ROOT_CONTEXT, type Context, type Span } from '@opentelemetry/api';
import type { Delivery, EventHandler } from '../../shared/bus/event-bus.ts';
import { inBatchSpan, inMessageSpan } from '../../shared/observability/tracing/spans.ts';
import { withTransaction, type Pool, type PoolClient } from '../../shared/db/pool.ts';
import type { EventEnvelope } from '../../shared/domain/events.ts';
import { PoisonMessageError } from '../../shared/errors/domain.ts';
import type { Logger } from '../../shared/observability/logger.ts';

export const PROJECTOR_CONSUMER = 'projections';
/** Advisory lock serializing read-model rebuilds against live projection batches. */
export const REBUILD_LOCK_ID = 727_274_002;

/** A module's projection with the declaration that says which events are its own. */
export interface ModuleProjector {
  module: Pick<ModuleDefinition, 'name' | 'events'>;
  projection: ModuleProjection;
}

/** Which module projects an event type: built once from the registry, checked on every event. */
export interface EventCatalog {
  /**
   * The event with its payload checked against its module's schema for that type and version.
   * @throws {PoisonMessageError} for a type no module declares, a version it does not know, or a payload that fails the schema.
   */
  check(event: EventEnvelope): EventEnvelope;
  /** Events grouped by the module that projects them, in registry order. */
  route(events: readonly EventEnvelope[]): { projector: ModuleProjector; events: EventEnvelope[] }[];
  readonly projectors: readonly ModuleProjector[];
}

export function createEventCatalog(projectors: readonly ModuleProjector[]): EventCatalog {
  const owner = new Map<string, ModuleProjector>();
  for (const p of projectors) {
    for (const type of Object.keys(p.module.events)) {
      const other = owner.get(type);
      if (other)
        throw new Error(
          `event type ${type} is declared by modules ${other.module.name} and ${p.module.name}`,
        );
      owner.set(type, p);
    }
  }
  return {
    projectors,
    check(event) {
      const p = owner.get(event.type);
      if (!p) throw new PoisonMessageError(`no module projects events of type ${event.type}`);
      const schema = p.module.events[event.type]?.[event.version];
      if (!schema) throw new PoisonMessageError(`${event.type} has no version ${event.version}`);
      const parsed = schema.safeParse(event.payload);
      if (!parsed.success) {
        throw new PoisonMessageError(
          `${event.type} v${event.version} payload does not match its schema`,
          parsed.error.issues.map((i) => ({ path: `payload.${i.path.join('.')}`, message: i.message })),
        );
      }
      return { ...event, payload: parsed.data as Record<string, unknown> };
    },
    route(events) {
      const groups = new Map<ModuleProjector, EventEnvelope[]>();
      for (const e of events) {
        const p = owner.get(e.type);
        if (!p) continue; // checked on the way in; a rebuild skips what no module knows any more
        const group = groups.get(p) ?? [];
        group.push(e);
        groups.set(p, group);
      }
      return projectors.flatMap((p) => (groups.has(p) ? [{ projector: p, events: groups.get(p)! }] : []));
    },
  };
}

/** The catalog of every registered module's projection (their worker sides are loaded for it). */
export async function loadEventCatalog(
  modules: readonly ModuleDefinition[] = MODULES,
): Promise<EventCatalog> {
  return createEventCatalog(
    await Promise.all(
      modules.map(async (module) => ({ module, projection: (await module.worker()).projection })),
    ),
  );
}

/** Records event ids in the inbox; returns those seen for the first time (the ones to apply). */
export async function claimInbox(
  client: PoolClient,
  consumer: string,
  eventIds: readonly string[],
): Promise<Set<string>> {
  const { rows } = await client.query<{ event_id: string }>({
    name: 'conveyor-claim-inbox',
    text: `INSERT INTO projection_inbox (consumer, event_id) SELECT $1, unnest($2::uuid[])
           ON CONFLICT DO NOTHING RETURNING event_id`,
    values: [consumer, [...eventIds].sort()],
  });
  return new Set(rows.map((r) => r.event_id));
}

/**
 * Applies a batch of events in one transaction: inbox first (events seen before are skipped), then
 * each module's projection with the fresh events of its types.
 * @returns how many events were fresh.
 */
export async function applyEvents(
  client: PoolClient,
  consumer: string,
  events: readonly EventEnvelope[],
  catalog: EventCatalog,
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
  for (const { projector, events: own } of catalog.route(unique.filter((e) => fresh.has(e.eventId)))) {
    await projector.projection.apply(client, own);
  }
  return fresh.size;
}

export interface ProjectorOptions {
  pool: Pool;
  logger: Logger;
  /** Which module projects which events. @defaultValue every registered module's ({@link loadEventCatalog}) */
  catalog?: EventCatalog;
  consumer?: string;
  batchSize: number;
  batchWaitMs: number;
  /** Test hook: called after a batch's transaction commits, before the bus acks (chaos tests kill here). */
  afterCommit?: (count: number) => Promise<void> | void;
}

/** The idempotent projection consumer of every module, as an {@link EventHandler} any bus can drive. */
export function createProjector(options: ProjectorOptions): { handle: EventHandler; drain(): Promise<void> } {
  const consumer = options.consumer ?? PROJECTOR_CONSUMER;
  const catalog = options.catalog ? Promise.resolve(options.catalog) : loadEventCatalog();
  // A catalog that failed to load fails every delivery (retried, then dead-lettered), never silently.
  catalog.catch(() => undefined);
  const log = options.logger.child({ component: 'projector', consumer });
  // Each event's span (its own parent: the publish span of its message) rides with it into the batch;
  // the batch's transaction gets a span of its own linked to all of them.
  const batcher = createBatcher<{ event: EventEnvelope; context?: Context | undefined }, void>({
    maxSize: options.batchSize,
    maxWaitMs: options.batchWaitMs,
    run: (items) =>
      runWithIsolation(items, (batch) =>
        inBatchSpan(
          `project ${consumer}`,
          batch,
          (i) => i.context,
          { 'db.system.name': 'postgresql' },
          async () => {
            const known = await catalog;
            const events = batch.map((i) => i.event);
            await withTransaction(options.pool, (client) => applyEvents(client, consumer, events, known));
            await options.afterCommit?.(batch.length);
            return batch.map(() => undefined);
          },
        ),
      ),
  });
  async function project(event: EventEnvelope, delivery: Delivery, span?: Span): Promise<void> {
    // Poison (unknown type, bad payload) is thrown here, before batching: dead-lettered at once.
    const checked = (await catalog).check(event);
    await batcher.submit(span ? { event: checked, context: context.active() } : { event: checked });
    log.info(
      {
        correlationId: event.correlationId,
        eventId: event.eventId,
        type: event.type,
        attempt: delivery.attempt,
      },
      'event projected',
    );
  }
  return {
    handle: (event, delivery) =>
      inMessageSpan(
        {
          operation: 'process',
          kind: 'consumer',
          system: delivery.transport,
          destination: consumer,
          messageId: event.eventId,
          parent: delivery.trace ?? ROOT_CONTEXT,
          attributes: {
            'messaging.consumer.group.name': consumer,
            'messaging.message.conversation_id': event.correlationId,
            'conveyor.event.type': event.type,
            'conveyor.delivery.attempt': delivery.attempt,
          },
        },
        (span) => project(event, delivery, span),
      ),
    drain: () => batcher.drain(),
  };
}
