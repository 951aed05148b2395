import type { CommandHandler } from '../../shared/modules/module.ts';
import { createOrderCommandHandler } from '../../modules/orders/worker/index.ts';
import { createPaymentGateway, type PaymentGateway } from '../../modules/orders/worker/payment.ts';
import { ordersModule } from '../../modules/orders/module.ts';
import type { Pool } from '../../shared/db/pool.ts';
import type { Logger } from '../../shared/observability/logger.ts';
import type { OnFatal } from '../../shared/runtime/lifecycle.ts';
import { createOutboxWaker } from '../../workers/outbox/wake.ts';
import {
  createCommandWorker,
  type CommandWorker,
  type CommandWorkerConfig,
  type CommandWorkerDeps,
} from '../../workers/commands/worker.ts';

export type OrderWorker = CommandWorker;

/**
 * The orders module's command worker as `npm run workers` runs it (the core's command worker driving
 * the module's handler), with the payment gateway a test chooses (default: the instant approver).
 * `wrap` lets a test put a fault in front of the real handler (it still decides and writes).
 */
export function createOrderWorker(
  deps: {
    pool: Pool;
    logger: Logger;
    payments?: PaymentGateway;
    onFatal?: OnFatal;
    onVerdict?: CommandWorkerDeps['onVerdict'];
    wrap?: (handler: CommandHandler) => CommandHandler;
  },
  config: CommandWorkerConfig & { supportedCurrencies: readonly string[] },
): OrderWorker {
  const payments =
    deps.payments ??
    createPaymentGateway(
      { logger: deps.logger },
      {
        timeout: 5_000,
        errorThresholdPercentage: 50,
        resetTimeout: 30_000,
        volumeThreshold: 10,
        rollingWindowMs: 10_000,
      },
    );
  const onOutboxAppended = createOutboxWaker(deps.pool);
  const handler = createOrderCommandHandler({
    pool: deps.pool,
    supportedCurrencies: config.supportedCurrencies,
    payments,
    onOutboxAppended,
  }) as CommandHandler;
  return createCommandWorker(
    {
      pool: deps.pool,
      logger: deps.logger,
      module: ordersModule,
      handler: deps.wrap ? deps.wrap(handler) : handler,
      onOutboxAppended,
      ...(deps.onFatal ? { onFatal: deps.onFatal } : {}),
      ...(deps.onVerdict ? { onVerdict: deps.onVerdict } : {}),
    },
    config,
  );
}
