import { z } from 'zod';
import { CorrelationIdSchema, OrderItemSchema } from './order.ts';

/** Event types, past tense. */
export const EventTypes = {
  orderPlaced: 'order.placed',
  orderRejected: 'order.rejected',
  orderDeadLettered: 'order.dead_lettered',
} as const;
export type EventType = (typeof EventTypes)[keyof typeof EventTypes];

const OrderSnapshot = {
  orderId: z.uuid(),
  customerId: z.string().min(1).max(64),
  currency: z.string().length(3),
  totalCents: z.number().int().min(0),
  items: z.array(OrderItemSchema),
  attempts: z.number().int().min(0),
  acceptedAt: z.iso.datetime(),
};

export const OrderPlacedPayload = z.object({ ...OrderSnapshot, completedAt: z.iso.datetime() });
export const OrderRejectedPayload = z.object({
  ...OrderSnapshot,
  rejectedAt: z.iso.datetime(),
  reason: z.string(),
  code: z.string(),
});
export const OrderDeadLetteredPayload = z.object({
  orderId: z.uuid(),
  customerId: z.string().max(64).nullable(),
  currency: z.string().max(3).nullable(),
  totalCents: z.number().int().nullable(),
  items: z.array(OrderItemSchema).nullable(),
  attempts: z.number().int().min(0),
  acceptedAt: z.iso.datetime().nullable(),
  deadLetteredAt: z.iso.datetime(),
  error: z.string(),
  deadLetterId: z.string(),
});

/** Every event on every bus: one envelope, headers mirror its metadata. */
export const EventEnvelopeSchema = z.discriminatedUnion('type', [
  z.object({
    eventId: z.uuid(),
    type: z.literal(EventTypes.orderPlaced),
    version: z.literal(1),
    key: z.string(),
    correlationId: CorrelationIdSchema,
    occurredAt: z.iso.datetime(),
    payload: OrderPlacedPayload,
  }),
  z.object({
    eventId: z.uuid(),
    type: z.literal(EventTypes.orderRejected),
    version: z.literal(1),
    key: z.string(),
    correlationId: CorrelationIdSchema,
    occurredAt: z.iso.datetime(),
    payload: OrderRejectedPayload,
  }),
  z.object({
    eventId: z.uuid(),
    type: z.literal(EventTypes.orderDeadLettered),
    version: z.literal(1),
    key: z.string(),
    correlationId: CorrelationIdSchema,
    occurredAt: z.iso.datetime(),
    payload: OrderDeadLetteredPayload,
  }),
]);
export type EventEnvelope = z.infer<typeof EventEnvelopeSchema>;
export type OrderPlacedEvent = Extract<EventEnvelope, { type: 'order.placed' }>;
