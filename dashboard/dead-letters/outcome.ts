import type { Pool } from '../../shared/db/pool.ts';
import type { DeadLetterRecord } from '../../shared/dead-letters/dead-letter.ts';
import { OrdersQueues } from '../../modules/orders/queue.ts';
import { MODULES } from '../../modules/registry.ts';
import { commandQueueNames } from '../../shared/queue/names.ts';
import type { JobLookup } from '../jobs.ts';
import { findDecisions, findInbox, lastRedrives } from '../orders/story.sql.ts';

/**
 * What became of a dead letter after its last redrive — told from the facts, not from the fact that
 * the redrive was sent:
 * - `queued`: back on its origin, not processed yet (waiting, running, or retrying);
 * - `failed_again`: processed and dead-lettered again (the record is pending with the new error);
 * - `done`: processed (the order decided, or the event projected);
 * - `send_failed`: the redrive itself could not be sent; the dead letter is pending as before.
 */
export type RedriveOutcome =
  | { kind: 'never' }
  | { kind: 'discarded' }
  | { kind: 'queued'; redrivenAt: Date; detail: string }
  | { kind: 'failed_again'; redrivenAt: Date; failedAt: Date; error: string }
  | { kind: 'done'; redrivenAt: Date; at: Date | null; detail: string }
  | { kind: 'send_failed'; redrivenAt: Date; error: string };

export interface RedriveOutcomes {
  /** The outcome of each dead letter's last redrive, by id (in a few queries, whatever the count). */
  of(deadLetters: readonly DeadLetterRecord[]): Promise<Map<string, RedriveOutcome>>;
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** The event id a dead-lettered event carries (header on every bus; BullMQ also uses it as the key). */
function eventIdOf(dl: DeadLetterRecord): string | null {
  const id = dl.headers['event-id'] ?? dl.messageKey;
  return id && UUID.test(id) ? id : null;
}

const COMMAND_QUEUES: readonly string[] = commandQueueNames(MODULES);
const isCommand = (dl: DeadLetterRecord) => dl.kind === 'command' && COMMAND_QUEUES.includes(dl.origin);
const isOrderCommand = (dl: DeadLetterRecord) => dl.kind === 'command' && dl.origin === OrdersQueues.commands;

/**
 * @example const outcome = (await createRedriveOutcomes({ pool, jobs }).of([dl])).get(dl.id);
 */
export function createRedriveOutcomes(deps: { pool: Pool; jobs: JobLookup }): RedriveOutcomes {
  return {
    async of(deadLetters) {
      const touched = deadLetters.filter((d) => d.status !== 'discarded');
      const redrives = await lastRedrives(
        deps.pool,
        touched.map((d) => d.id),
      );
      const inFlight = touched.filter((d) => d.status === 'redriven' && redrives.has(d.id));
      const orderIds = inFlight
        .filter(isOrderCommand)
        .map((d) => d.subjectId)
        .filter((id): id is string => !!id && UUID.test(id));
      const eventIds = inFlight
        .filter((d) => d.kind === 'event')
        .map(eventIdOf)
        .filter((id): id is string => id !== null);
      const [decisions, inbox] = await Promise.all([
        findDecisions(deps.pool, orderIds),
        findInbox(deps.pool, eventIds),
      ]);
      const processed = new Map(inbox.map((i) => [i.eventId, i]));

      // One job lookup per in-flight command at most, all at once.
      const outcomes = await Promise.all(
        deadLetters.map(async (dl): Promise<[string, RedriveOutcome]> => {
          if (dl.status === 'discarded') return [dl.id, { kind: 'discarded' }];
          const last = redrives.get(dl.id);
          if (!last) return [dl.id, { kind: 'never' }];
          if (last.action === 'dead_letter.redrive_failed')
            return [
              dl.id,
              { kind: 'send_failed', redrivenAt: last.at, error: last.error ?? 'unknown error' },
            ];
          // Only a new dead-lettering takes a redriven record back to pending (a failed send is audited
          // as redrive_failed, handled above): pending after a redrive means it failed again.
          if (dl.status === 'pending')
            return [
              dl.id,
              { kind: 'failed_again', redrivenAt: last.at, failedAt: dl.failedAt, error: dl.error },
            ];
          return [dl.id, await inFlightOutcome(dl, last.at)];
        }),
      );
      return new Map(outcomes);

      async function inFlightOutcome(dl: DeadLetterRecord, redrivenAt: Date): Promise<RedriveOutcome> {
        if (isCommand(dl)) {
          // The orders write model says it first (a completed job may already be trimmed from Redis);
          // any module's job says it otherwise.
          const decision = isOrderCommand(dl) && dl.subjectId ? decisions.get(dl.subjectId) : undefined;
          if (decision && decision.status !== 'dead_lettered')
            return { kind: 'done', redrivenAt, at: decision.decidedAt, detail: `order ${decision.status}` };
          const job = dl.messageKey ? await deps.jobs.get(dl.origin, dl.messageKey) : null;
          if (!job)
            return {
              kind: 'queued',
              redrivenAt,
              detail: `sent back to ${dl.origin}; no job found there now`,
            };
          if (job.state === 'completed')
            return { kind: 'done', redrivenAt, at: job.finishedAt, detail: 'job completed' };
          // The core's retries leave no `failedReason` (only BullMQ's own failures do): the count says it.
          const retrying =
            job.attemptsMade > 0
              ? `; ${job.attemptsMade} of ${job.attempts} attempts failed${job.failedReason ? `, last: ${job.failedReason}` : ''}`
              : '';
          return { kind: 'queued', redrivenAt, detail: `job ${job.state} in ${dl.origin}${retrying}` };
        }
        const eventId = eventIdOf(dl);
        const seen = eventId ? processed.get(eventId) : undefined;
        if (seen)
          return {
            kind: 'done',
            redrivenAt,
            at: seen.processedAt,
            detail: `event projected by ${seen.consumer}`,
          };
        return { kind: 'queued', redrivenAt, detail: `sent back to ${dl.origin}; not projected yet` };
      }
    },
  };
}
