import {
  SendMessageBatchCommand,
  type BatchResultErrorEntry,
  type SendMessageBatchRequestEntry,
  type SQSClient,
} from '@aws-sdk/client-sqs';
import { backoffDelayMs } from '../codec.ts';
import { entrySize } from './messages.ts';

/** SendMessageBatch takes at most 10 entries… */
export const MAX_BATCH_ENTRIES = 10;
/** …of at most 256 KiB together (and each). */
export const MAX_BATCH_BYTES = 262_144;

/** SQS refused entries for a reason no retry changes (`SenderFault`): an invalid or oversized message. */
export class SqsPublishRejectedError extends Error {
  override readonly name = 'SqsPublishRejectedError';
  constructor(
    readonly queueUrl: string,
    readonly failed: readonly BatchResultErrorEntry[],
  ) {
    super(
      `SQS rejected ${failed.length} message(s) for ${queueUrl}: ` +
        failed.map((f) => `${f.Id} ${f.Code ?? ''} ${f.Message ?? ''}`.trim()).join('; '),
    );
  }
}

/** Entries still unconfirmed after every retry (SQS kept failing them on its side). */
export class SqsPublishIncompleteError extends Error {
  override readonly name = 'SqsPublishIncompleteError';
  constructor(
    readonly queueUrl: string,
    readonly failed: readonly BatchResultErrorEntry[],
    attempts: number,
  ) {
    super(
      `SQS did not accept ${failed.length} message(s) for ${queueUrl} after ${attempts} attempts: ` +
        failed.map((f) => `${f.Id} ${f.Code ?? ''}`.trim()).join('; '),
    );
  }
}

/**
 * Cuts entries into SendMessageBatch calls: at most {@link MAX_BATCH_ENTRIES} each, and at most
 * {@link MAX_BATCH_BYTES} together. Keeps the order (a FIFO group's messages stay in sequence).
 * @throws {SqsPublishRejectedError} for an entry that alone is over the limit: SQS would refuse it.
 */
export function chunkEntries(
  queueUrl: string,
  entries: readonly SendMessageBatchRequestEntry[],
): SendMessageBatchRequestEntry[][] {
  const chunks: SendMessageBatchRequestEntry[][] = [];
  let chunk: SendMessageBatchRequestEntry[] = [];
  let bytes = 0;
  for (const entry of entries) {
    const size = entrySize(entry);
    if (size > MAX_BATCH_BYTES) {
      throw new SqsPublishRejectedError(queueUrl, [
        { Id: entry.Id, SenderFault: true, Code: 'MessageTooLong', Message: `${size} bytes` },
      ]);
    }
    if (chunk.length === MAX_BATCH_ENTRIES || bytes + size > MAX_BATCH_BYTES) {
      chunks.push(chunk);
      chunk = [];
      bytes = 0;
    }
    chunk.push(entry);
    bytes += size;
  }
  if (chunk.length > 0) chunks.push(chunk);
  return chunks;
}

export interface SendBatchOptions {
  /** Calls per chunk, the first included, while SQS fails some entries on its side. @defaultValue 5 */
  attempts?: number;
  /** Backoff before retrying the failed entries: base and cap (ms). @defaultValue 50 and 2_000 */
  retryBaseMs?: number;
  retryMaxMs?: number;
}

/**
 * Sends one chunk (≤ 10 entries, ≤ 256 KiB) and resolves only once SQS confirmed every entry. When
 * SQS fails some entries on its side (throttling, an internal error: `SenderFault` false), exactly
 * those are sent again, with backoff; one it refuses (`SenderFault` true) fails the call at once.
 * A failed call (network, 5xx past the SDK's own retries) rejects: the caller publishes again, and
 * the consumers' idempotence absorbs what had gone through.
 */
export async function sendChunk(
  client: SQSClient,
  queueUrl: string,
  chunk: readonly SendMessageBatchRequestEntry[],
  options: SendBatchOptions = {},
): Promise<void> {
  const attempts = options.attempts ?? 5;
  let pending = [...chunk];
  let failed: BatchResultErrorEntry[] = [];
  for (let attempt = 1; attempt <= attempts; attempt++) {
    if (attempt > 1) {
      await new Promise((r) =>
        setTimeout(r, backoffDelayMs(attempt - 1, options.retryBaseMs ?? 50, options.retryMaxMs ?? 2_000)),
      );
    }
    const out = await client.send(new SendMessageBatchCommand({ QueueUrl: queueUrl, Entries: pending }));
    failed = out.Failed ?? [];
    const rejected = failed.filter((f) => f.SenderFault);
    if (rejected.length > 0) throw new SqsPublishRejectedError(queueUrl, rejected);
    const confirmed = new Set((out.Successful ?? []).map((s) => s.Id));
    const retry = new Set(failed.map((f) => f.Id));
    // An entry neither confirmed nor reported failed is not confirmed: send it again too.
    pending = pending.filter((e) => retry.has(e.Id) || !confirmed.has(e.Id));
    if (pending.length === 0) return;
  }
  throw new SqsPublishIncompleteError(queueUrl, failed, attempts);
}

/** Runs `tasks` with at most `limit` at once; rejects with the first failure after all settled. */
export async function runLimited(tasks: readonly (() => Promise<void>)[], limit: number): Promise<void> {
  let next = 0;
  let firstError: unknown;
  const lane = async () => {
    while (next < tasks.length) {
      const task = tasks[next++]!;
      try {
        await task();
      } catch (err) {
        firstError ??= err;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, tasks.length) }, lane));
  if (firstError !== undefined) throw firstError;
}
