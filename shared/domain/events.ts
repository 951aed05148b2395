import { z } from 'zod';
import { CorrelationIdSchema } from './ids.ts';

/** `<aggregate>.<past tense>`, e.g. `order.placed`, `refund.completed`. */
const EventTypeSchema = z.string().regex(/^[a-z][a-z0-9_]*\.[a-z][a-z0-9_]*$/, '<aggregate>.<past tense>');

/**
 * Every event on every bus: one envelope, whatever module emitted it; headers mirror its metadata.
 * The bus checks the envelope; the projector checks the payload against the emitting module's
 * schema for that type and version (modules/registry.ts).
 */
export const EventEnvelopeSchema = z.object({
  eventId: z.uuid(),
  type: EventTypeSchema,
  version: z.number().int().min(1),
  /** The aggregate's id (an order id): the partition / ordering key on buses that order by key. */
  key: z.string().min(1),
  correlationId: CorrelationIdSchema,
  occurredAt: z.iso.datetime(),
  payload: z.record(z.string(), z.unknown()),
});
export type EventEnvelope = z.infer<typeof EventEnvelopeSchema>;

/** An envelope of one event type whose payload its module's schema has checked (for a module's typed union). */
export type TypedEvent<T extends string, P extends z.ZodType> = Omit<EventEnvelope, 'type' | 'payload'> & {
  type: T;
  payload: z.infer<P>;
};
