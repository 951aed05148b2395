import { z } from 'zod';
import type { TypedEvent } from '../../shared/domain/events.ts';
import { TenantIdSchema } from '../../shared/modules/tenant.ts';

/** The refunds module's event types. Their key is the order id (ordered with the order's events). */
export const RefundEventTypes = {
  completed: 'refund.completed',
  rejected: 'refund.rejected',
  deadLettered: 'refund.dead_lettered',
  cancelled: 'refund.cancelled',
} as const;

const RefundSnapshot = {
  refundId: z.uuid(),
  orderId: z.uuid(),
  amountCents: z.number().int().min(1),
  reason: z.string().nullable(),
  attempts: z.number().int().min(0),
  requestedAt: z.iso.datetime(),
  /** Who the refund was for (its job's `tenant`); absent in events from before it, and for jobs without one. */
  tenant: TenantIdSchema.optional(),
};

export const RefundCompletedPayload = z.object({
  ...RefundSnapshot,
  customerId: z.string(),
  currency: z.string().length(3),
  completedAt: z.iso.datetime(),
});
export const RefundRejectedPayload = z.object({
  ...RefundSnapshot,
  customerId: z.string().nullable(),
  currency: z.string().nullable(),
  code: z.string(),
  detail: z.string(),
  rejectedAt: z.iso.datetime(),
});
export const RefundDeadLetteredPayload = z.object({
  refundId: z.uuid(),
  orderId: z.uuid().nullable(),
  amountCents: z.number().int().nullable(),
  reason: z.string().nullable(),
  attempts: z.number().int().min(0),
  requestedAt: z.iso.datetime().nullable(),
  /** As in the other refund events: absent when the job had none (or was malformed). */
  tenant: TenantIdSchema.optional(),
  error: z.string(),
  deadLetterId: z.string(),
  deadLetteredAt: z.iso.datetime(),
});

/** Cancelled before it was decided (POST /v1/refunds/{id}/cancel): never executed. */
export const RefundCancelledPayload = z.object({
  ...RefundSnapshot,
  cancelledAt: z.iso.datetime(),
  /** Who cancelled it: the API key's id, or the console user. */
  cancelledBy: z.string(),
  /** Why it was cancelled (the refund's own reason is `reason`). */
  cancelReason: z.string().nullable(),
});

export const refundEvents = {
  [RefundEventTypes.completed]: { 1: RefundCompletedPayload },
  [RefundEventTypes.rejected]: { 1: RefundRejectedPayload },
  [RefundEventTypes.deadLettered]: { 1: RefundDeadLetteredPayload },
  [RefundEventTypes.cancelled]: { 1: RefundCancelledPayload },
} as const;

export type RefundEvent =
  | TypedEvent<typeof RefundEventTypes.completed, typeof RefundCompletedPayload>
  | TypedEvent<typeof RefundEventTypes.rejected, typeof RefundRejectedPayload>
  | TypedEvent<typeof RefundEventTypes.deadLettered, typeof RefundDeadLetteredPayload>
  | TypedEvent<typeof RefundEventTypes.cancelled, typeof RefundCancelledPayload>;
