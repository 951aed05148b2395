import { z } from 'zod';
import type { EventEnvelope } from '../domain/events.ts';
import type { PoolClient } from '../db/pool.ts';

/** The core's batch event types (not a module's: every module's batch route emits them). */
export const BatchEventTypes = {
  completed: 'batch.completed',
} as const;

/** `batch.completed` v1: every accepted item of a batch is decided; its final counts. */
export const BatchCompletedV1 = z.object({
  batchId: z.uuid(),
  /** The module whose batch route accepted it (`orders`). */
  module: z.string(),
  /** Who it was for (the key's tenant, or `<key id>/<sub-tenant>`); null when not recorded. */
  tenant: z.string().nullable(),
  /** The key's id that posted it. */
  acceptedBy: z.string().nullable(),
  total: z.number().int().min(0),
  completed: z.number().int().min(0),
  rejected: z.number().int().min(0),
  deadLettered: z.number().int().min(0),
  /** Items cancelled before they were decided; absent in events from before cancel existed. */
  cancelled: z.number().int().min(0).optional(),
  createdAt: z.iso.datetime({ offset: true }),
  completedAt: z.iso.datetime({ offset: true }),
});
export type BatchCompleted = z.infer<typeof BatchCompletedV1>;

/** The core's batch events by type then version, in the shape a module declares its `events`. */
export const BATCH_EVENTS: Readonly<Record<string, Readonly<Record<number, z.ZodType>>>> = {
  [BatchEventTypes.completed]: { 1: BatchCompletedV1 },
};

/**
 * The batch events' entry in the projector's event catalog (workers/projections/projector.ts,
 * `createEventCatalog`): declared, so the projector does not take them for poison; no read model of
 * their own (a batch's progress is its `batches` row, written with the decisions), so nothing to apply.
 * Structurally a `ModuleProjector` (not imported: shared/ does not depend on workers/).
 */
export const batchEventsProjector = {
  module: {
    name: 'batches',
    events: BATCH_EVENTS,
    // About no command: the results stream (api/results) has no `projected` step to publish for them.
    commandIdOf: (_event: EventEnvelope): string | undefined => undefined,
  },
  projection: {
    tables: [] as readonly string[],
    apply: async (_client: PoolClient, _events: readonly EventEnvelope[]): Promise<void> => {},
  },
};
