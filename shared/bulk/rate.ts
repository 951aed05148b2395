/**
 * A token bucket: `ratePerSecond` tokens a second, at most `burst` saved up. A bulk action takes one
 * per item, so live traffic never meets more than that rate of bulk work.
 */
export interface TokenBucket {
  /** Resolves once a token is taken; rejects with the signal's reason when `signal` aborts first. */
  take(signal?: AbortSignal): Promise<void>;
}

export function createTokenBucket(
  ratePerSecond: number,
  options: { burst?: number; now?: () => number } = {},
): TokenBucket {
  if (!(ratePerSecond > 0)) throw new Error(`ratePerSecond must be positive, not ${ratePerSecond}`);
  const now = options.now ?? (() => performance.now());
  // A tenth of a second's worth: smooth, yet enough that a few lanes are not woken one token at a time.
  const burst = Math.max(1, options.burst ?? Math.ceil(ratePerSecond / 10));
  let tokens = 1;
  let at = now();

  const refill = () => {
    const t = now();
    tokens = Math.min(burst, tokens + ((t - at) / 1_000) * ratePerSecond);
    at = t;
  };

  return {
    async take(signal) {
      for (;;) {
        signal?.throwIfAborted();
        refill();
        if (tokens >= 1) {
          tokens -= 1;
          return;
        }
        const waitMs = Math.max(1, ((1 - tokens) / ratePerSecond) * 1_000);
        await new Promise<void>((resolve, reject) => {
          const timer = setTimeout(done, waitMs);
          function done() {
            signal?.removeEventListener('abort', aborted);
            resolve();
          }
          function aborted() {
            clearTimeout(timer);
            reject(signal?.reason instanceof Error ? signal.reason : new Error('aborted'));
          }
          signal?.addEventListener('abort', aborted, { once: true });
        });
      }
    },
  };
}
