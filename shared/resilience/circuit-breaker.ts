import CircuitBreakerImpl from 'opossum';
import type { Logger } from '../observability/logger.ts';

/**
 * The three states of a breaker, as logged and as `Metrics.setCircuitBreakerState` takes them
 * (`half-open` = one probe call let through).
 */
export type BreakerState = 'closed' | 'half-open' | 'open';

export interface CircuitBreakerOptions {
  /** Names the dependency in logs and metrics, e.g. `payment`. */
  name: string;
  /** A call slower than this counts as a failure (and its caller gets a {@link CircuitTimeoutError}). */
  timeoutMs: number;
  /** Failure percentage within the rolling window above which the breaker opens. */
  errorThresholdPercentage: number;
  /** How long the breaker stays open before it lets one probe call through (half-open). */
  resetTimeoutMs: number;
  /** Calls within the rolling window before the failure percentage may open the breaker. @defaultValue 0 */
  volumeThreshold?: number;
  /** Length of the statistical window. @defaultValue 10_000 */
  rollingWindowMs?: number;
  /**
   * Returns true for errors that are NOT the dependency's fault (e.g. a 4xx for a bad request): they
   * reach the caller but do not count toward opening the breaker. @defaultValue every error counts
   */
  isNeutral?: (err: unknown) => boolean;
  logger: Logger;
  /**
   * Called with the initial state and on every transition, after the log line. Same shape as
   * `Metrics.setCircuitBreakerState`, so `onStateChange: (n, s) => metrics.setCircuitBreakerState(n, s)`.
   */
  onStateChange?: (name: string, state: BreakerState) => void;
}

export interface CircuitBreaker<A extends unknown[], R> {
  readonly name: string;
  /** Calls the protected action, or rejects at once with {@link CircuitOpenError} while open. */
  fire(...args: A): Promise<R>;
  state(): BreakerState;
  /**
   * How long a caller should hold off before trying again: the time left until the breaker half-opens
   * when open; a short pause while a half-open probe is in flight; 0 when closed.
   */
  retryAfterMs(): number;
  /** Shuts the breaker down (timers stopped, later calls rejected). Idempotent. */
  close(): void;
}

/** The breaker is open (or a half-open probe is in flight): the call was not attempted. */
export class CircuitOpenError extends Error {
  override readonly name = 'CircuitOpenError';
  readonly code = 'circuit.open';
  constructor(
    readonly breaker: string,
    readonly retryAfterMs: number,
  ) {
    super(`circuit breaker "${breaker}" is open; call not attempted`);
  }
}

/** The protected call took longer than the breaker's timeout; it counted as a failure. */
export class CircuitTimeoutError extends Error {
  override readonly name = 'CircuitTimeoutError';
  readonly code = 'circuit.timeout';
  constructor(
    readonly breaker: string,
    readonly timeoutMs: number,
  ) {
    super(`call through circuit breaker "${breaker}" timed out after ${timeoutMs} ms`);
  }
}

/** The breaker was closed by shutdown: the process is stopping. */
export class CircuitShutdownError extends Error {
  override readonly name = 'CircuitShutdownError';
  constructor(readonly breaker: string) {
    super(`circuit breaker "${breaker}" is shut down`);
  }
}

const codeOf = (err: unknown): unknown =>
  err && typeof err === 'object' ? (err as { code?: unknown }).code : undefined;

/**
 * Wraps an async call in an opossum circuit breaker with typed errors and one log line (plus an
 * optional callback) on every state transition.
 * @example
 * const breaker = createCircuitBreaker((id: string) => client.authorize(id), { name: 'payment', timeoutMs: 5_000,
 *   errorThresholdPercentage: 50, resetTimeoutMs: 30_000, logger });
 * await breaker.fire(orderId); // throws CircuitOpenError while the dependency is known to be down
 */
export function createCircuitBreaker<A extends unknown[], R>(
  action: (...args: A) => Promise<R>,
  options: CircuitBreakerOptions,
): CircuitBreaker<A, R> {
  const log = options.logger.child({ component: 'circuit-breaker', breaker: options.name });
  const rollingWindowMs = options.rollingWindowMs ?? 10_000;
  const impl = new CircuitBreakerImpl<A, R>(action, {
    name: options.name,
    timeout: options.timeoutMs,
    errorThresholdPercentage: options.errorThresholdPercentage,
    resetTimeout: options.resetTimeoutMs,
    volumeThreshold: options.volumeThreshold ?? 0,
    rollingCountTimeout: rollingWindowMs,
    // opossum requires the window to divide evenly into buckets.
    rollingCountBuckets: rollingWindowMs % 10 === 0 ? 10 : 1,
    errorFilter: options.isNeutral ?? (() => false),
  });

  let current: BreakerState = 'closed';
  let openedAt = 0;
  const transition = (next: BreakerState, fields: Record<string, unknown> = {}) => {
    if (next === current) return;
    const from = current;
    current = next;
    const line = { from, to: next, ...fields };
    if (next === 'open') log.warn(line, 'circuit breaker state changed');
    else log.info(line, 'circuit breaker state changed');
    try {
      options.onStateChange?.(options.name, next);
    } catch (err) {
      log.error({ err }, 'circuit breaker state listener failed');
    }
  };
  impl.on('open', () => {
    openedAt = Date.now();
    const { failures, fires, timeouts } = impl.stats;
    transition('open', { retryAfterMs: options.resetTimeoutMs, failures, fires, timeouts });
  });
  impl.on('halfOpen', () => transition('half-open'));
  impl.on('close', () => transition('closed'));
  options.onStateChange?.(options.name, 'closed');

  let closed = false;
  return {
    name: options.name,
    async fire(...args) {
      try {
        return await impl.fire(...args);
      } catch (err) {
        const code = codeOf(err);
        if (code === 'EOPENBREAKER') throw new CircuitOpenError(options.name, retryAfter());
        if (code === 'ETIMEDOUT' && err instanceof Error && err.message.startsWith('Timed out after')) {
          throw new CircuitTimeoutError(options.name, options.timeoutMs);
        }
        if (code === 'ESHUTDOWN') throw new CircuitShutdownError(options.name);
        throw err;
      }
    },
    state: () => current,
    retryAfterMs: retryAfter,
    close() {
      if (closed) return;
      closed = true;
      impl.shutdown();
    },
  };

  function retryAfter(): number {
    if (current === 'closed') return 0;
    // Half-open with the probe in flight: check back soon, the probe settles within `timeoutMs`.
    if (current === 'half-open') return Math.max(50, Math.min(options.timeoutMs, 1_000));
    return Math.max(50, openedAt + options.resetTimeoutMs - Date.now());
  }
}
