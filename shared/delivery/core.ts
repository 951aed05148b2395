import type { DeadLetterSink, NewDeadLetter } from '../dead-letters/dead-letter.ts';
import type { Logger } from '../observability/logger.ts';
import { DeadLetterNotRecorded, recordDeadLetter } from './dead-letter.ts';
import { classify, type Outcome } from './outcome.ts';
import { judge, parkVerdict, type DeliveryPolicy, type DeliveryState, type Verdict } from './policy.ts';

/**
 * The primitives a transport offers for one message it holds. Everything else — counting attempts,
 * backoff, the last attempt, the dead-letter id and record, what happens when that record fails — is
 * decided by the core ({@link createDeliveryCore}), the same way for commands and every bus.
 */
export interface TransportActions {
  /** The message is finished (done, cancelled or dead-lettered): remove it for good. */
  ack(): Promise<void>;
  /**
   * Deliver it again after `delayMs` (≥ 0) as `next`: a retry has `next.attempt` one higher, a snooze
   * or park the same attempt and one more snooze. Must be durable before it resolves (the original is
   * acknowledged or replaced only once the copy or delay is safe).
   */
  handBack(
    delayMs: number,
    next: Required<DeliveryState>,
    why: 'retry' | 'snooze',
    /** Why: the failure retried or snoozed, or the dead letter that could not be recorded (for the transport to show). */
    error: Error,
  ): Promise<void>;
  /**
   * Copy the message to the transport's own dead-letter place (BullMQ `*-dead-letters`, Kafka
   * `<topic>.dlq`, RabbitMQ `<queue>.dlq`, SQS `<queue>-dlq`) — called only after its row is recorded.
   */
  copyToDeadLetters?(record: NewDeadLetter): Promise<void>;
}

/** One message as the core sees it. */
export interface Inbound {
  state: DeliveryState;
  actions: TransportActions;
  /** The dead letter this message becomes (id from `deadLetterId`); built only when needed. */
  deadLetter(error: Error, attempts: number): NewDeadLetter;
  /** The full record (a command: its row, the module's state and events in one transaction). Absent: the sink's insert. */
  recordWith?: ((record: NewDeadLetter) => Promise<void>) | undefined;
  /** Bound into every log line of this message (correlation id, event id, queue). */
  log?: Record<string, unknown>;
}

export interface DeliveryCoreDeps {
  sink: DeadLetterSink;
  logger: Logger;
  /** Told each verdict carried out (metrics); `parked` = a dead letter that could not be recorded yet. */
  onVerdict?: (action: Verdict['action'] | 'parked' | 'cancelled', origin: string) => void;
}

export interface DeliveryCore {
  readonly policy: DeliveryPolicy;
  /** Runs `work` and carries out the verdict of how it ended. Resolves to the verdict carried out. */
  deliver(message: Inbound, work: () => Promise<unknown>): Promise<Verdict>;
  /** Carries out the verdict of an outcome already known (a batch's item, a message that failed to parse). */
  settle(message: Inbound, outcome: Outcome): Promise<Verdict>;
  /** `settle` with `classify(failure)`: `undefined` = done. */
  settleFailure(message: Inbound, failure: unknown): Promise<Verdict>;
}

/**
 * The delivery core, one per consumer (its `origin` names it in logs and metrics). Only a failure to
 * hand back or ack escapes `deliver`/`settle` (the transport is down): the caller then leaves the
 * message to the transport's own redelivery (lock expiry, visibility timeout, uncommitted offset,
 * unacked delivery), which never consumes an attempt of ours unless the consumer keeps dying on it.
 */
export function createDeliveryCore(
  deps: DeliveryCoreDeps,
  policy: DeliveryPolicy,
  origin: string,
): DeliveryCore {
  const log = deps.logger.child({ component: 'delivery', origin });

  async function settle(message: Inbound, outcome: Outcome): Promise<Verdict> {
    const verdict = judge(outcome, message.state, policy);
    const fields = message.log ?? {};
    switch (verdict.action) {
      case 'ack':
        await message.actions.ack();
        if (verdict.cancelled) {
          log.warn({ ...fields, reason: verdict.cancelled.message }, 'delivery cancelled by its handler');
          deps.onVerdict?.('cancelled', origin);
        } else deps.onVerdict?.('ack', origin);
        return verdict;
      case 'retry':
        await message.actions.handBack(
          verdict.delayMs,
          { attempt: verdict.nextAttempt, snoozes: message.state.snoozes ?? 0 },
          'retry',
          verdict.error,
        );
        log.warn(
          { ...fields, attempt: message.state.attempt, delayMs: verdict.delayMs, err: verdict.error },
          'delivery failed; will retry',
        );
        deps.onVerdict?.('retry', origin);
        return verdict;
      case 'snooze':
        await message.actions.handBack(
          verdict.delayMs,
          { attempt: message.state.attempt, snoozes: verdict.snoozes },
          'snooze',
          verdict.error,
        );
        log.info(
          { ...fields, attempt: message.state.attempt, delayMs: verdict.delayMs, err: verdict.error },
          'delivery snoozed; no attempt consumed',
        );
        deps.onVerdict?.('snooze', origin);
        return verdict;
      case 'dead-letter':
        return deadLetter(message, verdict);
    }
  }

  async function deadLetter(
    message: Inbound,
    verdict: Verdict & { action: 'dead-letter' },
  ): Promise<Verdict> {
    const fields = message.log ?? {};
    const record = message.deadLetter(verdict.error, verdict.attempts);
    try {
      // The row first: nothing reaches a native DLQ, or is acknowledged, without it.
      const full = await recordDeadLetter(deps.sink, record, message.recordWith);
      if (!full)
        log.error(
          { ...fields, deadLetterId: record.id },
          'dead letter recorded alone: its full record was refused',
        );
      await message.actions.copyToDeadLetters?.(record);
    } catch (err) {
      const park = parkVerdict(message.state, policy, err instanceof Error ? err : new Error(String(err)));
      if (park.action !== 'snooze') throw err;
      await message.actions.handBack(
        park.delayMs,
        { attempt: message.state.attempt, snoozes: park.snoozes },
        'snooze',
        park.error,
      );
      log.error(
        { ...fields, deadLetterId: record.id, delayMs: park.delayMs, err, cause: verdict.error },
        err instanceof DeadLetterNotRecorded
          ? 'dead letter not recorded; message parked, no attempt consumed'
          : 'dead letter not copied to the transport; message parked, no attempt consumed',
      );
      deps.onVerdict?.('parked', origin);
      return park;
    }
    await message.actions.ack();
    log.warn(
      { ...fields, deadLetterId: record.id, attempts: verdict.attempts, err: verdict.error },
      'moved to dead letters',
    );
    deps.onVerdict?.('dead-letter', origin);
    return verdict;
  }

  return {
    policy,
    settle,
    settleFailure: (message, failure) => settle(message, classify(failure)),
    async deliver(message, work) {
      let failure: unknown;
      try {
        await work();
      } catch (err) {
        failure = err;
        if (failure === undefined) failure = new Error('handler threw undefined');
      }
      return settle(message, classify(failure));
    },
  };
}
