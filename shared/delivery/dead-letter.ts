import { createHash } from 'node:crypto';
import type { DeadLetterSink, NewDeadLetter, Transport } from '../dead-letters/dead-letter.ts';
import { isOutage } from './outage.ts';

/**
 * The one dead-letter id scheme: `<transport>-<origin>-<message id>`, where the origin is where a
 * redrive sends the message back (a command queue, a group's event queue, a topic plus its group) and
 * the message id is the command's or event's own id (job id = order id, event id). So it is the same
 * id however often the message fails, is redriven and fails again (the record is then updated with the
 * new error), on every transport. Free of ':' (a BullMQ job id) and at most 200 characters: a longer
 * or unsafe part is replaced by its hash.
 */
export function deadLetterId(parts: {
  transport: Transport;
  origin: string;
  /** The group, where the origin alone does not name it (a Kafka topic every group reads). */
  scope?: string | undefined;
  messageId: string;
}): string {
  const origin = parts.scope ? `${parts.origin}.${parts.scope}` : parts.origin;
  const id = `${parts.transport}-${safe(origin)}-${safe(parts.messageId)}`;
  return id.length <= 200 ? id : `${parts.transport}-${hash(`${origin}|${parts.messageId}`)}`;
}

/** The id of a message that carries none we can read (unparseable bytes): a hash of its bytes. */
export function contentId(body: Buffer | string | null | undefined): string {
  return `sha-${hash(body ?? '')}`;
}

function safe(part: string): string {
  return /^[A-Za-z0-9._-]{1,120}$/.test(part) ? part : `h${hash(part)}`;
}

function hash(text: Buffer | string): string {
  return createHash('sha256').update(text).digest('hex').slice(0, 32);
}

/**
 * The dead letter could not be recorded because the database is unavailable: the caller parks the
 * message (a snooze, no attempt consumed) and it is dead-lettered on a later delivery. It is never
 * acknowledged, never left in a transport's failed set, never moved to a native DLQ without a row.
 */
export class DeadLetterNotRecorded extends Error {
  override readonly name = 'DeadLetterNotRecorded';
}

/**
 * Records a dead letter — the one path every transport and the command worker take.
 * `write` is the full record (for a command: the row, the module's write-model state and its events,
 * in one transaction); absent, the sink's plain insert. When it fails:
 * - because the database is unavailable ({@link isOutage}) → {@link DeadLetterNotRecorded} (park);
 * - for a reason no wait will change (the row cannot be stored: a NUL in the text, a module's write
 *   that refuses it) → the dead letter alone, made storable and naming that failure, through `sink`;
 *   if even that fails → {@link DeadLetterNotRecorded}.
 * @returns whether the full `write` took (false: recorded by the fallback).
 */
export async function recordDeadLetter(
  sink: DeadLetterSink,
  record: NewDeadLetter,
  write: (record: NewDeadLetter) => Promise<void> = (r) => sink.record(r),
): Promise<boolean> {
  try {
    await write(record);
    return true;
  } catch (err) {
    if (isOutage(err)) throw new DeadLetterNotRecorded(recordFailure(err), { cause: err });
    const reason = err instanceof Error ? err.message : String(err);
    try {
      await sink.record(
        storable({ ...record, error: `${record.error} (dead letter recorded alone: ${reason})` }),
      );
      return false;
    } catch (again) {
      throw new DeadLetterNotRecorded(recordFailure(again), { cause: again });
    }
  }
}

function recordFailure(err: unknown): string {
  return `the dead letter could not be recorded: ${err instanceof Error ? err.message : String(err)}`;
}

/** Text PostgreSQL can store: NUL (which `text` and `jsonb` refuse) becomes U+FFFD. The payload is bytes: kept as is. */
export function storable(record: NewDeadLetter): NewDeadLetter {
  return {
    ...record,
    error: clean(record.error),
    stack: record.stack === null ? null : clean(record.stack),
    messageKey: record.messageKey === null ? null : clean(record.messageKey),
    correlationId: record.correlationId === null ? null : clean(record.correlationId),
    subjectId: record.subjectId === null ? null : clean(record.subjectId),
    headers: Object.fromEntries(Object.entries(record.headers).map(([k, v]) => [clean(k), clean(v)])),
  };
}

function clean(text: string): string {
  // NUL (which text and jsonb refuse), then lone surrogates (which no UTF-8 encoder can write).
  return text
    .replaceAll('\u0000', '\ufffd')
    .replace(/[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/g, '\ufffd');
}
