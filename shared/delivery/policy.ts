import { backoffDelayMs } from '../bus/codec.ts';
import type { Outcome } from './outcome.ts';

/** How many times a message is tried, and how long it waits between tries. One for every transport. */
export interface DeliveryPolicy {
  /** Attempts before a failing message is dead-lettered (snoozes do not count). */
  maxAttempts: number;
  /** First retry's backoff; doubles per attempt, full jitter over its upper half. */
  backoffMs: number;
  /** @defaultValue 60_000 */
  backoffMaxMs?: number;
  /** First snooze's delay when the snooze names none (an outage); doubles per snooze. @defaultValue 1_000 */
  snoozeMs?: number;
  /** @defaultValue 30_000 */
  snoozeMaxMs?: number;
}

/** Where a delivery stands: which attempt this is (1 = first) and how often it was snoozed before. */
export interface DeliveryState {
  attempt: number;
  /** Snoozes (and parks) so far; grows the snooze delay. @defaultValue 0 */
  snoozes?: number;
}

/**
 * What the transport does with a message — the whole of the decision, made in one place:
 * - `ack`: done (or cancelled: `cancelled` holds why) — remove it;
 * - `retry`: hand it back after `delayMs`, the attempt counted (the next is `nextAttempt`);
 * - `snooze`: hand it back after `delayMs`, the attempt given back (`snoozes` is the new count);
 * - `dead-letter`: record it (`recordDeadLetter`), copy it to the transport's own DLQ, then remove it;
 *   when the record fails, the transport {@link parkVerdict parks} it: a snooze.
 */
export type Verdict =
  | { action: 'ack'; cancelled?: Error | undefined }
  | { action: 'retry'; delayMs: number; nextAttempt: number; error: Error }
  | { action: 'snooze'; delayMs: number; snoozes: number; error: Error }
  | { action: 'dead-letter'; attempts: number; error: Error };

/** The verdict for an outcome of attempt `state.attempt`. Pure: same inputs, same verdict (but for jitter). */
export function judge(outcome: Outcome, state: DeliveryState, policy: DeliveryPolicy): Verdict {
  switch (outcome.kind) {
    case 'done':
      return { action: 'ack' };
    case 'cancel':
      return { action: 'ack', cancelled: outcome.error };
    case 'snooze':
      return snooze(state, policy, outcome.error, outcome.delayMs);
    case 'poison':
      return { action: 'dead-letter', attempts: state.attempt, error: outcome.error };
    case 'retry':
      if (state.attempt >= policy.maxAttempts)
        return { action: 'dead-letter', attempts: state.attempt, error: outcome.error };
      return {
        action: 'retry',
        delayMs: backoffDelayMs(state.attempt, policy.backoffMs, policy.backoffMaxMs ?? 60_000),
        nextAttempt: state.attempt + 1,
        error: outcome.error,
      };
  }
}

/**
 * A message whose dead letter could not be recorded (the database is down) is parked: handed back
 * like a snooze, its attempt not consumed. On its next delivery it is still on its last attempt, so
 * it is tried once more and, failing again, dead-lettered again — no marker needed, on any transport.
 */
export function parkVerdict(state: DeliveryState, policy: DeliveryPolicy, error: Error): Verdict {
  return snooze(state, policy, error, undefined);
}

function snooze(
  state: DeliveryState,
  policy: DeliveryPolicy,
  error: Error,
  delayMs: number | undefined,
): Verdict & { action: 'snooze' } {
  const snoozes = (state.snoozes ?? 0) + 1;
  return {
    action: 'snooze',
    delayMs:
      delayMs !== undefined && delayMs >= 0
        ? delayMs
        : backoffDelayMs(snoozes, policy.snoozeMs ?? 1_000, policy.snoozeMaxMs ?? 30_000),
    snoozes,
    error,
  };
}
