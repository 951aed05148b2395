import { parseCarrier } from '../../shared/observability/tracing/trace-context.ts';
import { randomUUID } from 'node:crypto';
import type { Job, Queue } from 'bullmq';
import type { CommandHandler, ModuleDefinition } from '../../modules/module.ts';
import { insertOutbox } from '../../shared/db/outbox.sql.ts';
import { withTransaction, type Pool } from '../../shared/db/pool.ts';
import {
  deadLetterParams,
  INSERT_DEAD_LETTER_SQL,
  type NewDeadLetter,
} from '../../shared/dead-letters/dead-letter.ts';
import { CorrelationIdSchema } from '../../shared/domain/ids.ts';

export interface CommandDeadLetterDeps {
  pool: Pool;
  /** The module's BullMQ dead-letter queue (`<module>-dead-letters`), so operators see them in Bull Board too. */
  dlq: Queue;
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

/** The dead letter of a command job: deterministic, and free of ':' so it can be a BullMQ job id. */
export function commandDeadLetterId(origin: string, jobId: string): string {
  return `bullmq-${origin}-${jobId}`;
}

/**
 * Moves a command to the dead letters: in ONE transaction the dead-letter record, the module's
 * write-model state of it and the events that tell the read models (so they show it); then a copy in
 * the module's BullMQ dead-letter queue. Idempotent per job id.
 * @returns the dead letter's id.
 */
export async function deadLetterCommand(
  deps: CommandDeadLetterDeps,
  job: Job,
  error: Error,
  attempts: number,
): Promise<string> {
  const id = commandDeadLetterId(deps.origin, job.id ?? randomUUID());
  const data: unknown = job.data;
  const described = deps.handler.describe(data);
  const correlationId =
    described.correlationId && CorrelationIdSchema.safeParse(described.correlationId).success
      ? described.correlationId
      : job.id
        ? `job-${job.id}`.slice(0, 128).padEnd(8, '-')
        : randomUUID();
  const now = new Date();
  const record: NewDeadLetter = {
    id,
    transport: 'bullmq',
    origin: deps.origin,
    kind: 'command',
    messageKey: job.id ?? null,
    payload: Buffer.from(JSON.stringify(data ?? null)),
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
    failedAt: now,
  };

  const appended = await withTransaction(deps.pool, async (client) => {
    await client.query(INSERT_DEAD_LETTER_SQL, deadLetterParams(record));
    const events = await deps.handler.deadLettered(client, {
      data,
      error,
      attempts,
      deadLetterId: id,
      correlationId,
      at: now,
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

  await deps.dlq.add(
    'dead-letter',
    {
      deadLetterId: id,
      origin: deps.origin,
      jobId: job.id,
      data,
      error: error.message,
      attempts,
      correlationId,
    },
    { jobId: id, removeOnComplete: true, removeOnFail: true },
  );
  return id;
}
