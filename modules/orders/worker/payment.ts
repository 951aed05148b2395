import { z } from 'zod';
import type { OrderJob } from '../domain.ts';
import { orderTotalCents } from '../domain.ts';
import type { Logger } from '../../../shared/observability/logger.ts';
import {
  CircuitOpenError,
  CircuitShutdownError,
  CircuitTimeoutError,
  createCircuitBreaker,
  type BreakerState,
  type CircuitBreaker,
} from '../../../shared/resilience/circuit-breaker.ts';

/** What we send the payment service: one authorization per order, keyed by the order id. */
export interface PaymentRequest {
  orderId: string;
  customerId: string;
  currency: string;
  amountCents: number;
  correlationId: string;
}

/** The payment service's answer (parsed at the edge; extra fields are ignored). */
export const PaymentDecisionSchema = z.object({
  approved: z.boolean(),
  reason: z.string().max(1_000).optional(),
});
export type PaymentDecision = z.infer<typeof PaymentDecisionSchema>;

/** The header that makes the authorization idempotent per order at the payment service. */
export const PAYMENT_IDEMPOTENCY_HEADER = 'idempotency-key';

/**
 * The payment service is down or misbehaving (5xx, 408, 429, timeout, refused connection, a body that
 * is not a decision): a DEPENDENCY failure. The order is not at fault; it must wait, not be retried
 * toward the dead letters.
 */
export class PaymentUnavailableError extends Error {
  override readonly name = 'PaymentUnavailableError';
  constructor(
    message: string,
    readonly status?: number,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/** The payment service refused our request as malformed (4xx): our fault, not the dependency's. */
export class PaymentRequestError extends Error {
  override readonly name = 'PaymentRequestError';
  constructor(
    message: string,
    readonly status: number,
  ) {
    super(message);
  }
}

export interface PaymentClient {
  authorize(request: PaymentRequest): Promise<PaymentDecision>;
}

export interface HttpPaymentClientOptions {
  /** `PAYMENT_URL`: the authorization endpoint, POSTed to. */
  url: string;
  /** Per-call deadline; the request is aborted when it passes. */
  timeoutMs: number;
  fetch?: typeof fetch;
}

/** Reads at most a few KiB of the body: a misbehaving service must not make us buffer megabytes. */
async function readJson(res: Response): Promise<unknown> {
  const text = (await res.text()).slice(0, 16_384);
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return undefined;
  }
}

/** Authorizes payments over HTTP: `POST url` with the order as JSON and its id as idempotency key. */
export function createHttpPaymentClient(options: HttpPaymentClientOptions): PaymentClient {
  const doFetch = options.fetch ?? fetch;
  return {
    async authorize(request) {
      let res: Response;
      try {
        res = await doFetch(options.url, {
          method: 'POST',
          headers: {
            'content-type': 'application/json',
            accept: 'application/json',
            [PAYMENT_IDEMPOTENCY_HEADER]: request.orderId,
            'x-correlation-id': request.correlationId,
          },
          body: JSON.stringify(request),
          signal: AbortSignal.timeout(options.timeoutMs),
        });
      } catch (err) {
        const timedOut = err instanceof Error && (err.name === 'TimeoutError' || err.name === 'AbortError');
        throw new PaymentUnavailableError(
          timedOut
            ? `payment service did not answer within ${options.timeoutMs} ms`
            : 'payment service unreachable',
          undefined,
          { cause: err },
        );
      }
      const body = await readJson(res).catch((err: unknown) => {
        throw new PaymentUnavailableError('payment response body could not be read', res.status, {
          cause: err,
        });
      });
      if (res.status >= 500 || res.status === 408 || res.status === 429) {
        throw new PaymentUnavailableError(`payment service answered ${res.status}`, res.status);
      }
      if (res.status >= 400)
        throw new PaymentRequestError(`payment service refused the request: ${res.status}`, res.status);
      const parsed = PaymentDecisionSchema.safeParse(body);
      if (!res.ok || !parsed.success) {
        throw new PaymentUnavailableError(
          `payment service answered ${res.status} without a decision`,
          res.status,
        );
      }
      return parsed.data;
    },
  };
}

/** Used when `PAYMENT_URL` is unset (local runs, most tests): approves every order at once. */
export function createInstantApprover(): PaymentClient {
  return { authorize: () => Promise.resolve({ approved: true }) };
}

export interface PaymentGatewayConfig {
  /** `PAYMENT_URL`; undefined = the built-in instant approver. */
  url?: string;
  timeout: number;
  errorThresholdPercentage: number;
  resetTimeout: number;
  volumeThreshold: number;
  rollingWindowMs: number;
}

export interface PaymentGatewayDeps {
  logger: Logger;
  /** Overrides the client chosen from `url` (tests). */
  client?: PaymentClient;
  /** Every breaker transition (connect the circuit-breaker state gauge here). */
  onStateChange?: (name: string, state: BreakerState) => void;
}

/** Payment authorization behind the circuit breaker. */
export interface PaymentGateway {
  authorize(request: PaymentRequest): Promise<PaymentDecision>;
  readonly breaker: CircuitBreaker<[PaymentRequest], PaymentDecision>;
  close(): void;
}

/**
 * The payment dependency as the order worker sees it: a client (HTTP, or the instant approver) behind a
 * circuit breaker. A 4xx does not count toward opening the breaker (the service is up; our request was
 * wrong); 5xx, timeouts and connection errors do.
 */
export function createPaymentGateway(deps: PaymentGatewayDeps, config: PaymentGatewayConfig): PaymentGateway {
  const client =
    deps.client ??
    (config.url
      ? createHttpPaymentClient({ url: config.url, timeoutMs: config.timeout })
      : createInstantApprover());
  const breaker = createCircuitBreaker((request: PaymentRequest) => client.authorize(request), {
    name: 'payment',
    timeoutMs: config.timeout,
    errorThresholdPercentage: config.errorThresholdPercentage,
    resetTimeoutMs: config.resetTimeout,
    volumeThreshold: config.volumeThreshold,
    rollingWindowMs: config.rollingWindowMs,
    isNeutral: (err) => err instanceof PaymentRequestError,
    logger: deps.logger,
    onStateChange: deps.onStateChange,
  });
  // The instant approver (no payment service configured) cannot fail, time out or be slow: the
  // breaker's bookkeeping and per-call timer would protect nothing, so it is called directly.
  const direct = !deps.client && !config.url;
  return {
    authorize: direct ? (request) => client.authorize(request) : (request) => breaker.fire(request),
    breaker,
    close: () => breaker.close(),
  };
}

/** The authorization request of an order command. */
export function paymentRequestOf(job: OrderJob): PaymentRequest {
  return {
    orderId: job.orderId,
    customerId: job.order.customerId,
    currency: job.order.currency,
    amountCents: orderTotalCents(job.order.items),
    correlationId: job.correlationId,
  };
}

/**
 * True when the payment dependency (not the order) is why the call failed — down, slow, behind an open
 * breaker, or the breaker already shut down by a stopping process: wait, do not burn an attempt.
 */
export function isPaymentDependencyFailure(err: unknown): boolean {
  return (
    err instanceof PaymentUnavailableError ||
    err instanceof CircuitOpenError ||
    err instanceof CircuitTimeoutError ||
    err instanceof CircuitShutdownError
  );
}
