import { z } from 'zod';
import type { TypedEvent } from '../../shared/domain/events.ts';
import { TenantIdSchema } from '../../shared/modules/tenant.ts';
import { OrderItemSchema } from './domain.ts';

/** The orders module's event types, past tense. */
export const OrderEventTypes = {
  placed: 'order.placed',
  rejected: 'order.rejected',
  deadLettered: 'order.dead_lettered',
  cancelled: 'order.cancelled',
} as const;

const OrderSnapshot = {
  orderId: z.uuid(),
  customerId: z.string().min(1).max(64),
  currency: z.string().length(3),
  totalCents: z.number().int().min(0),
  items: z.array(OrderItemSchema),
  attempts: z.number().int().min(0),
  acceptedAt: z.iso.datetime(),
  /** Who the order was for (its job's `tenant`); absent in events from before it, and for jobs without one. */
  tenant: TenantIdSchema.optional(),
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
  /** As in the other order events: absent when the job had none (or was malformed). */
  tenant: TenantIdSchema.optional(),
  deadLetteredAt: z.iso.datetime(),
  error: z.string(),
  deadLetterId: z.string(),
});

/** Cancelled before it was decided (POST /v1/orders/{id}/cancel): never executed. */
export const OrderCancelledPayload = z.object({
  ...OrderSnapshot,
  cancelledAt: z.iso.datetime(),
  /** Who cancelled it: the API key's id, or the console user. */
  cancelledBy: z.string(),
  reason: z.string().nullable(),
});

/** Payload schemas by type and version: the module declaration's `events`. */
export const orderEvents = {
  [OrderEventTypes.placed]: { 1: OrderPlacedPayload },
  [OrderEventTypes.rejected]: { 1: OrderRejectedPayload },
  [OrderEventTypes.deadLettered]: { 1: OrderDeadLetteredPayload },
  [OrderEventTypes.cancelled]: { 1: OrderCancelledPayload },
} as const;

export type OrderPlacedEvent = TypedEvent<typeof OrderEventTypes.placed, typeof OrderPlacedPayload>;
export type OrderRejectedEvent = TypedEvent<typeof OrderEventTypes.rejected, typeof OrderRejectedPayload>;
export type OrderDeadLetteredEvent = TypedEvent<
  typeof OrderEventTypes.deadLettered,
  typeof OrderDeadLetteredPayload
>;
export type OrderCancelledEvent = TypedEvent<typeof OrderEventTypes.cancelled, typeof OrderCancelledPayload>;
/** An event of this module whose payload the projector has checked. */
export type OrderEvent = OrderPlacedEvent | OrderRejectedEvent | OrderDeadLetteredEvent | OrderCancelledEvent;
