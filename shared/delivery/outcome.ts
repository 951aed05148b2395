import { DomainError, PoisonMessageError } from '../errors/domain.ts';
import { asError } from '../runtime/lifecycle.ts';
import { isOutage } from './outage.ts';

export { PoisonMessageError };

/**
 * Thrown by a handler: "not now, and not your fault" — deliver this again after `delayMs` without
 * consuming an attempt (River's `JobSnooze`, Oban's `{:snooze, seconds}`: the attempt is given back and
 * the snooze counted apart). For a dependency the handler needs that is unavailable; a handler need not
 * throw it for PostgreSQL itself — an outage error is recognized as a snooze ({@link classify}).
 */
export class SnoozeDelivery extends Error {
  override readonly name = 'SnoozeDelivery';
  constructor(
    message: string,
    /** How long to wait; absent: the policy's snooze backoff. */
    readonly delayMs?: number,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/**
 * Thrown by a handler: this work must not be done, now or later (River's `JobCancel`, Oban's
 * `{:cancel, reason}`). Acknowledged without effect, logged with the reason, never retried and never a
 * dead letter.
 */
export class CancelDelivery extends Error {
  override readonly name = 'CancelDelivery';
}

/** What a delivery's failure means — the one vocabulary every transport and the command worker share. */
export type Outcome =
  | { kind: 'done' }
  | { kind: 'retry'; error: Error }
  | { kind: 'snooze'; error: Error; delayMs?: number | undefined }
  | { kind: 'cancel'; error: Error }
  | { kind: 'poison'; error: Error };

/**
 * The typed outcome of whatever a handler threw (nothing thrown: `done`). A dependency outage
 * (PostgreSQL or a connection refused, {@link isOutage}) and a {@link DependencyUnavailable} domain
 * error snooze; anything else unknown is a retry.
 */
export function classify(err: unknown): Outcome {
  if (err === undefined) return { kind: 'done' };
  const error = asError(err);
  if (error instanceof CancelDelivery) return { kind: 'cancel', error };
  if (error instanceof PoisonMessageError) return { kind: 'poison', error };
  if (error instanceof SnoozeDelivery) return { kind: 'snooze', error, delayMs: error.delayMs };
  if (error instanceof DomainError && error.code === 'dependency.unavailable')
    return { kind: 'snooze', error };
  if (isOutage(error)) return { kind: 'snooze', error };
  return { kind: 'retry', error };
}
