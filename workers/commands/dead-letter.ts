import { parseCarrier } from '../../shared/observability/tracing/trace-context.ts';
import { randomUUID } from 'node:crypto';
import type { Job, Queue } from 'bullmq';
import type { CommandHandler, ModuleDefinition } from '../../shared/modules/module.ts';
import { insertOutbox } from '../../shared/db/outbox.sql.ts';
import { withTransaction, type Pool } from '../../shared/db/pool.ts';
import {
  deadLetterParams,
  INSERT_DEAD_LETTER_SQL,
  type NewDeadLetter,
} from '../../shared/dead-letters/dead-letter.ts';
import { contentId, deadLetterId } from '../../shared/delivery/dead-letter.ts';
import { CorrelationIdSchema } from '../../shared/domain/ids.ts';

export interface CommandDeadLetterDeps {
  pool: Pool;
  /** The command queue the job came from: where a redrive sends it back. */
  origin: string;
  /** The module's handler: what a dead-lettered command means for its write model. */
  handler: Pick<CommandHandler, 'describe' | 'deadLettered'>;
  /** The module's event schemas: a dead-letter event that fails them is not appended (the projector would refuse it). */
  events: ModuleDefinition['events'];
  /** Told about such an event (a module bug): logged by the worker; the dead letter itself is still recorded. */
  onInvalidEvent?: (type: string, error: string) => void;
  /** Called after the dead-letter events were committed to the outbox: wakes the relays. */
  onOutboxAppended?: () => void;
}

/**
 * The dead letter of a command job: the delivery core's one scheme (`bullmq-<queue>-<job id>`, the
 * same string this function always produced for the ids the platform gives jobs), so rows recorded
 * before and after, and a redriven job failing again, keep one id.
 */
export function commandDeadLetterId(origin: string, jobId: string): string {
  return deadLetterId({ transport: 'bullmq', origin, messageId: jobId });
}

/** The dead letter a command job becomes: its data as it came, the error, and its trace context. */
export function commandDeadLetter(
  deps: Pick<CommandDeadLetterDeps, 'origin' | 'handler'>,
  job: Job,
  error: Error,
  attempts: number,
): NewDeadLetter {
  const data: unknown = job.data;
  const payload = Buffer.from(JSON.stringify(data ?? null));
  const described = deps.handler.describe(data);
  const correlationId =
    described.correlationId && CorrelationIdSchema.safeParse(described.correlationId).success
      ? described.correlationId
      : job.id
        ? `job-${job.id}`.slice(0, 128).padEnd(8, '-')
        : randomUUID();
  return {
    id: commandDeadLetterId(deps.origin, job.id ?? contentId(payload)),
    transport: 'bullmq',
    origin: deps.origin,
    kind: 'command',
    messageKey: job.id ?? null,
    payload,
    // The job's trace context (its producer's), so a redrive continues the command's trace.
    headers: {
      'job-name': job.name,
      'correlation-id': correlationId,
      ...parseCarrier(job.opts.telemetry?.metadata),
    },
    error: error.message,
    stack: error.stack ?? null,
    attempts,
    correlationId,
    subjectId: described.subjectId,
    firstFailedAt: new Date(job.processedOn ?? job.timestamp),
    failedAt: new Date(),
  };
}

/**
 * The full record of a command's dead letter (the delivery core's `recordWith`): in ONE transaction
 * the dead-letter row, the module's write-model state of it and the events that tell the read models
 * (so they show it); then the relays are woken. Idempotent per dead-letter id. Errors keep their
 * `code`, so the core tells an outage (park) from a refusal (record the dead letter alone).
 */
export async function recordCommandDeadLetter(
  deps: CommandDeadLetterDeps,
  data: unknown,
  record: NewDeadLetter,
): Promise<void> {
  const error = Object.assign(new Error(record.error), { stack: record.stack ?? undefined });
  const at = record.failedAt ?? new Date();
  const correlationId = record.correlationId ?? randomUUID();
  const appended = await withTransaction(deps.pool, async (client) => {
    await client.query(INSERT_DEAD_LETTER_SQL, deadLetterParams(record));
    const events = await deps.handler.deadLettered(client, {
      data,
      error,
      attempts: record.attempts,
      deadLetterId: record.id,
      correlationId,
      at,
    });
    const valid = events.filter((e) => {
      const schema = deps.events[e.type]?.[e.version];
      const checked = schema?.safeParse(e.payload);
      if (checked?.success) return true;
      deps.onInvalidEvent?.(
        e.type,
        checked ? checked.error.message : `no schema for ${e.type} v${e.version}`,
      );
      return false;
    });
    await insertOutbox(client, valid);
    return valid.length > 0;
  });
  if (appended) deps.onOutboxAppended?.();
}

/**
 * The copy in the module's BullMQ dead-letter queue (`<module>-dead-letters`, job id = dead-letter id),
 * so operators see it in Bull Board too: the core's `copyToDeadLetters`, after the row is recorded.
 */
export async function copyCommandDeadLetter(dlq: Queue, job: Job, record: NewDeadLetter): Promise<void> {
  await dlq.add(
    'dead-letter',
    {
      deadLetterId: record.id,
      origin: record.origin,
      jobId: job.id,
      data: job.data as unknown,
      error: record.error,
      attempts: record.attempts,
      correlationId: record.correlationId,
    },
    { jobId: record.id, removeOnComplete: true, removeOnFail: true },
  );
}
