import type { ModuleDefinition, ModuleProjection } from '../../shared/modules/module.ts';
import { batchEventsProjector } from '../../shared/batches/events.ts';
import { MODULES } from '../../modules/registry.ts';
import { createBatcher, runWithIsolation } from '../../shared/batch.ts';
import { context, ROOT_CONTEXT, type Context, type Span } from '@opentelemetry/api';
import type { Delivery, EventHandler } from '../../shared/bus/event-bus.ts';
import { inBatchSpan, inMessageSpan } from '../../shared/observability/tracing/spans.ts';
import { withTransaction, type Pool, type PoolClient } from '../../shared/db/pool.ts';
import type { EventEnvelope } from '../../shared/domain/events.ts';
import { PoisonMessageError } from '../../shared/errors/domain.ts';
import type { Logger } from '../../shared/observability/logger.ts';
import type { OutcomePublisher } from '../../shared/results/wire.ts';

export const PROJECTOR_CONSUMER = 'projections';
/** Advisory lock serializing read-model rebuilds against live projection batches. */
export const REBUILD_LOCK_ID = 727_274_002;

/** A module's projection with the declaration that says which events are its own. */
export interface ModuleProjector {
  module: Pick<ModuleDefinition, 'name' | 'events' | 'commandIdOf'>;
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
  return createEventCatalog([
    // The core's own events (batch.completed): declared, nothing to apply.
    batchEventsProjector,
    ...(await Promise.all(
      modules.map(async (module) => ({ module, projection: (await module.worker()).projection })),
    )),
  ]);
}

/** What the inbox says about a batch of events. */
export interface InboxClaim {
  /** Seen for the first time: the ones to apply. */
  fresh: Set<string>;
  /**
   * Not in the inbox, but older than its horizon (`projection_history.inbox_horizon`): the inbox may have
   * pruned their row, so it cannot tell whether they were applied. Never applied, never recorded.
   */
  forgotten: Map<string, { occurredAt: string; horizon: string }>;
}

/**
 * Records events in the inbox; returns those seen for the first time and those it can no longer judge.
 * The horizon is read in the same statement as the claim, after the caller took the rebuild lock
 * (shared): the pruner waits for that lock (exclusive, once) after it moves the horizon and before it
 * deletes a row below it, so a claim either ran before any such delete or sees the new horizon.
 */
export async function claimInbox(
  client: PoolClient,
  consumer: string,
  events: readonly Pick<EventEnvelope, 'eventId' | 'occurredAt'>[],
  options: { ignoreHorizon?: boolean } = {},
): Promise<InboxClaim> {
  const sorted = [...events].sort((a, b) => (a.eventId < b.eventId ? -1 : a.eventId > b.eventId ? 1 : 0));
  const { rows } = await client.query<{ event_id: string; occurred_at: Date | null; horizon: Date | null }>({
    name: 'conveyor-claim-inbox-horizon',
    text: `WITH h AS (
             SELECT CASE WHEN $4::boolean THEN '-infinity'::timestamptz
                         ELSE coalesce((SELECT inbox_horizon FROM projection_history), '-infinity') END AS before),
           e AS (SELECT id, at FROM unnest($2::uuid[], $3::timestamptz[]) AS e(id, at)),
           claimed AS (
             INSERT INTO projection_inbox (consumer, event_id, occurred_at)
             SELECT $1, e.id, e.at FROM e, h WHERE e.at >= h.before ORDER BY e.id
             ON CONFLICT DO NOTHING RETURNING event_id)
           SELECT event_id::text, NULL::timestamptz AS occurred_at, NULL::timestamptz AS horizon FROM claimed
           UNION ALL
           SELECT e.id::text, e.at, h.before FROM e, h
            WHERE e.at < h.before
              AND NOT EXISTS (SELECT 1 FROM projection_inbox i WHERE i.consumer = $1 AND i.event_id = e.id)`,
    values: [
      consumer,
      sorted.map((e) => e.eventId),
      sorted.map((e) => e.occurredAt),
      options.ignoreHorizon ?? false,
    ],
  });
  const claim: InboxClaim = { fresh: new Set(), forgotten: new Map() };
  for (const r of rows) {
    if (r.horizon) {
      claim.forgotten.set(r.event_id, {
        occurredAt: r.occurred_at!.toISOString(),
        horizon: r.horizon.toISOString(),
      });
    } else claim.fresh.add(r.event_id);
  }
  return claim;
}

/** The outcome of {@link applyEvents}. */
export interface AppliedEvents {
  /** How many events were fresh (applied). */
  applied: number;
  /** Events refused because the inbox's horizon passed them: dead-letter them, never apply them. */
  refused: Map<string, PoisonMessageError>;
}

/**
 * Applies a batch of events in one transaction: inbox first (events seen before are skipped, events
 * older than the inbox's horizon and not in it are refused), then each module's projection with the
 * fresh events of its types. `ignoreHorizon` is for the rebuild, which has emptied the inbox and the
 * read models itself.
 */
export async function applyEvents(
  client: PoolClient,
  consumer: string,
  events: readonly EventEnvelope[],
  catalog: EventCatalog,
  options: { ignoreHorizon?: boolean } = {},
): Promise<AppliedEvents> {
  // Shared with other projector batches, exclusive for a rebuild: live projection waits while the
  // read models are rebuilt (events queue up in the bus), then resumes; the inbox dedupes the overlap.
  // The inbox pruner takes it exclusively too, once, between moving the horizon and deleting below it.
  await client.query('SELECT pg_advisory_xact_lock_shared($1)', [REBUILD_LOCK_ID]);
  const unique = [...new Map(events.map((e) => [e.eventId, e])).values()];
  const { fresh, forgotten } = await claimInbox(client, consumer, unique, options);
  for (const { projector, events: own } of catalog.route(unique.filter((e) => fresh.has(e.eventId)))) {
    await projector.projection.apply(client, own);
  }
  const refused = new Map<string, PoisonMessageError>();
  for (const [eventId, { occurredAt, horizon }] of forgotten) {
    refused.set(
      eventId,
      new PoisonMessageError(
        `event ${eventId} occurred at ${occurredAt}, before the projections' inbox horizon ${horizon} ` +
          '(its retention): the inbox may have pruned its record, so applying it could count it twice. ' +
          'Refused, not applied: a redrive is refused again. Discard this dead letter if its effect is in the ' +
          'read models; if not, `npm run projections:rebuild` replays it while the outbox still holds it.',
      ),
    );
  }
  return { applied: fresh.size, refused };
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
  /**
   * The results hub's publisher (api/results): after each batch committed, a `projected` step per
   * event's command (one PUBLISH per module and batch). Absent: the API's streams find the projection
   * on their own heartbeat instead.
   */
  outcomes?: OutcomePublisher;
}

/** Tells the results hub which commands a committed batch projected: one step per event, per its module. */
function publishProjected(
  outcomes: OutcomePublisher,
  catalog: EventCatalog,
  events: readonly EventEnvelope[],
) {
  for (const { projector, events: own } of catalog.route(events)) {
    const { module } = projector;
    for (const event of own) {
      const id = module.commandIdOf ? module.commandIdOf(event) : event.key;
      if (id) outcomes.publish(module.name, { id, step: 'projected' });
    }
  }
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
  // A batch settles each event with its refusal, if the inbox's horizon passed it (then it is dead-lettered).
  const batcher = createBatcher<
    { event: EventEnvelope; context?: Context | undefined },
    PoisonMessageError | undefined
  >({
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
            const { refused } = await withTransaction(options.pool, (client) =>
              applyEvents(client, consumer, events, known),
            );
            if (options.outcomes) publishProjected(options.outcomes, known, events);
            await options.afterCommit?.(batch.length);
            return batch.map((i) => refused.get(i.event.eventId));
          },
        ),
      ),
  });
  async function project(event: EventEnvelope, delivery: Delivery, span?: Span): Promise<void> {
    // Poison (unknown type, bad payload) is thrown here, before batching: dead-lettered at once.
    const checked = (await catalog).check(event);
    const refusal = await batcher.submit(
      span ? { event: checked, context: context.active() } : { event: checked },
    );
    if (refusal) throw refusal;
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
