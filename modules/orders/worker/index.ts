import type { CommandHandler, ModuleWorkerFactory } from '../../../shared/modules/module.ts';
import type { Pool } from '../../../shared/db/pool.ts';
import { decideOrder, type OrderJob } from '../domain.ts';
import { describeOrderJob, orderDeadLettered } from './dead-letter.ts';
import { createOrderHandler, type OrderOutcome } from './handler.ts';
import {
  createPaymentGateway,
  isPaymentDependencyFailure,
  paymentRequestOf,
  type PaymentGateway,
} from './payment.ts';
import { orderProjection } from './projection.ts';

export interface OrderCommandDeps {
  pool: Pool;
  supportedCurrencies: readonly string[];
  /** The payment service behind its breaker; closed with the handler. */
  payments: PaymentGateway;
  onOutboxAppended?: () => void;
}

/** The orders module's command handler (what the core's command worker drives for queue `orders`). */
export function createOrderCommandHandler(
  deps: OrderCommandDeps,
): CommandHandler<OrderJob, unknown, OrderOutcome> {
  const { payments, supportedCurrencies } = deps;
  const handler = createOrderHandler({
    pool: deps.pool,
    supportedCurrencies,
    ...(deps.onOutboxAppended ? { onOutboxAppended: deps.onOutboxAppended } : {}),
  });
  return {
    describe: describeOrderJob,
    // Only an order the business rules accept needs the payment service (the rest are rejected anyway).
    prepare: async (job) =>
      decideOrder(job.order, supportedCurrencies).kind === 'accept'
        ? payments.authorize(paymentRequestOf(job))
        : undefined,
    dependency: {
      isUnavailable: isPaymentDependencyFailure,
      retryAfterMs: () => payments.breaker.retryAfterMs(),
    },
    handleBatch: handler.handleBatch as CommandHandler<OrderJob, unknown, OrderOutcome>['handleBatch'],
    statusOf: (outcome) => outcome.status,
    deadLettered: orderDeadLettered,
    close: async () => payments.close(),
  };
}

/** The orders module's worker side: decisions (with the payment service behind its breaker) and read models. */
export const ordersWorker: ModuleWorkerFactory = {
  commands(ctx) {
    const { config } = ctx;
    const payments = createPaymentGateway(
      { logger: ctx.logger, ...(ctx.onBreakerState ? { onStateChange: ctx.onBreakerState } : {}) },
      { url: config.payment.url, ...config.circuitBreaker },
    );
    return createOrderCommandHandler({
      pool: ctx.pool,
      supportedCurrencies: config.workers.orders.supportedCurrencies,
      payments,
      onOutboxAppended: ctx.onOutboxAppended,
    }) as CommandHandler;
  },
  projection: orderProjection,
};
