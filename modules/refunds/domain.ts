import { z } from 'zod';
import { CorrelationIdSchema } from '../../shared/domain/ids.ts';
import { freeText } from '../../shared/domain/text.ts';
import { DomainError } from '../../shared/errors/domain.ts';
import { TenantIdSchema } from '../../shared/modules/tenant.ts';

/** What a producer posts to `POST /v1/orders/{orderId}/refunds`. */
export const RequestRefundSchema = z.strictObject({
  /** Money in integer minor units of the order's currency. */
  amountCents: z.number().int().min(1).max(Number.MAX_SAFE_INTEGER),
  /** When given, must be the order's currency (a guard against refunding in the wrong one). */
  currency: z
    .string()
    .regex(/^[A-Z]{3}$/, 'an ISO 4217 code such as EUR')
    .optional(),
  /** Free text: no NUL, noncharacter or lone surrogate (no store or broker of ours can carry them). */
  reason: freeText({ max: 500 }).optional(),
});
export type RequestRefund = z.infer<typeof RequestRefundSchema>;

/** The BullMQ job data of queue `refunds` (the command). */
export const RefundJobSchema = z.strictObject({
  refundId: z.uuid(),
  orderId: z.uuid(),
  correlationId: CorrelationIdSchema,
  requestedAt: z.iso.datetime(),
  /**
   * Who the refund is for, for fairness (shared/fairness): the requesting key's id, or `<key id>/<sub>`
   * when the key named a sub-tenant. Absent for jobs from before it existed and foreign producers'.
   */
  tenant: TenantIdSchema.optional(),
  refund: RequestRefundSchema,
});
export type RefundJob = z.infer<typeof RefundJobSchema>;

/** Stable rejection codes: a rejected refund is final (never retried); producers match on these. */
export const RefundRejections = {
  orderNotCompleted: 'refund.order_not_completed',
  currencyMismatch: 'refund.currency_mismatch',
  exceedsOrderTotal: 'refund.exceeds_order_total',
} as const;

/** The order as the write model holds it when the refund is decided (its row locked). */
export interface RefundableOrder {
  status: string;
  currency: string;
  customerId: string;
  totalCents: number;
  /** Refunds of this order already completed. */
  refundedCents: number;
}

export type RefundDecision =
  | { kind: 'complete' }
  | { kind: 'reject'; code: (typeof RefundRejections)[keyof typeof RefundRejections]; reason: string };

/** Pure business rules: the order must be completed, in the same currency, and never refunded past its total. */
export function decideRefund(refund: RequestRefund, order: RefundableOrder | null): RefundDecision {
  if (!order || order.status !== 'completed') {
    return {
      kind: 'reject',
      code: RefundRejections.orderNotCompleted,
      reason: order ? `the order is ${order.status}, not completed` : 'the order has not been decided',
    };
  }
  if (refund.currency !== undefined && refund.currency !== order.currency) {
    return {
      kind: 'reject',
      code: RefundRejections.currencyMismatch,
      reason: `the order is in ${order.currency}, not ${refund.currency}`,
    };
  }
  const left = order.totalCents - order.refundedCents;
  if (refund.amountCents > left) {
    return {
      kind: 'reject',
      code: RefundRejections.exceedsOrderTotal,
      reason: `${refund.amountCents} exceeds the ${left} left to refund of ${order.totalCents}`,
    };
  }
  return { kind: 'complete' };
}

export class RefundNotFoundError extends DomainError {
  readonly code = 'refund.not_found';
  readonly status = 404;
  constructor(readonly refundId: string) {
    super(`refund ${refundId} not found`);
  }
}
