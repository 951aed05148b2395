import type { NewDeadLetter, Transport } from '../dead-letters/dead-letter.ts';
import { decodeEvent, encodeEvent } from '../bus/codec.ts';
import type { EventEnvelope } from '../domain/events.ts';
import { carrierFromHeaders, withCarrier } from '../observability/tracing/trace-context.ts';
import { deadLetterId } from './dead-letter.ts';

/**
 * Whether a failed publish says the broker will never take this message — as opposed to "not now"
 * (an outage, throttling, a timeout) or "not from you" (credentials, permissions, a missing queue,
 * a misconfiguration that would refuse every message). Only the first kind is a reason to set an
 * event aside: the outbox relay then quarantines it into the dead letters and publishes the rest.
 *
 * Recognized by the client libraries' own error shapes (duck-typed: no bus is imported here), along
 * the `cause` chain and an aggregate's `errors`:
 * - SQS (AWS SDK v3): a client fault (`$fault: 'client'`, not `$retryable`) about the message's
 *   contents or size — `InvalidMessageContents`, `MessageTooLong`, `InvalidParameterValue`,
 *   `InvalidAttributeValue`, `BatchRequestTooLong`; ElasticMQ answers a body with U+FFFF with
 *   `InvalidAction` "MalformedRequestContentRejection" (its JSON parser stops there). And a batch's
 *   per-entry failure with `SenderFault: true` (the SQS bus's `SqsPublishRejectedError` keeps them in
 *   `failed`), unless its code is about credentials, KMS or throttling.
 * - Kafka (kafkajs): `KafkaJSProtocolError` of type `MESSAGE_TOO_LARGE`, `RECORD_LIST_TOO_LARGE` or
 *   `INVALID_RECORD`, also wrapped (`KafkaJSNonRetriableError`, `KafkaJSNumberOfRetriesExceeded`:
 *   `cause`; `KafkaJSAggregateError`: `errors`).
 * - RabbitMQ (amqplib): the channel closed by the server with 406 PRECONDITION_FAILED "message size
 *   N is larger than configured max size M" (amqplib's channel `error`: `code` 406). It reaches the
 *   publisher only if the bus keeps that error as its failure's cause.
 * Any other client fault (AccessDenied, QueueDoesNotExist, KMS, a malformed batch we built) is not:
 * quarantining would dead-letter every event for what an operator must fix.
 */
export function isRefusedForGood(err: unknown): boolean {
  return refusal(err, 0) !== undefined;
}

/** The error in `err`'s chain that says the broker refused the message for good, if any. */
export function refusalOf(err: unknown): Error | undefined {
  return refusal(err, 0);
}

function refusal(err: unknown, depth: number): Error | undefined {
  if (typeof err !== 'object' || err === null || depth > 8) return undefined;
  if (err instanceof Error && (sqsRefusal(err) || kafkaRefusal(err) || amqpRefusal(err))) return err;
  const nested = (err as { errors?: unknown }).errors;
  if (Array.isArray(nested)) {
    for (const e of nested) {
      const found = refusal(e, depth + 1);
      if (found) return found;
    }
  }
  return refusal((err as { cause?: unknown }).cause, depth + 1);
}

// ---- SQS -----------------------------------------------------------------------------------------

/** Codes (names) of a refusal of the message itself: its contents or its size. */
const SQS_MESSAGE_REFUSALS = new Set([
  'InvalidMessageContents',
  'MessageTooLong',
  'InvalidParameterValue',
  'InvalidAttributeValue',
  'BatchRequestTooLong',
]);

/** Sender faults about who sends, not what: never a reason to set one message aside. */
const SQS_NOT_THE_MESSAGE =
  /^(Kms|AccessDenied|InvalidSecurity|InvalidClientTokenId|SignatureDoesNotMatch|RequestThrottled|Throttling|OverLimit|QueueDoesNotExist|NonExistentQueue|UnsupportedOperation)/;

function sqsCode(value: unknown): string {
  return typeof value === 'string' ? value.replace(/^AWS\.SimpleQueueService\./, '') : '';
}

function sqsRefusal(err: Error): boolean {
  const e = err as Error & { $fault?: unknown; $retryable?: unknown; Code?: unknown; failed?: unknown };
  if (e.$fault === 'client' && !e.$retryable) {
    const names = [sqsCode(e.name), sqsCode(e.Code)];
    if (names.some((n) => SQS_MESSAGE_REFUSALS.has(n))) return true;
    // ElasticMQ: U+FFFF ends its JSON parser's input; the whole request is "malformed".
    if (names.includes('InvalidAction') && /MalformedRequestContent/.test(e.message)) return true;
    return false;
  }
  // A batch's entries SQS refused (SqsPublishRejectedError: `failed`, each with SenderFault).
  if (Array.isArray(e.failed) && e.failed.length > 0) {
    return e.failed.every((f: unknown) => {
      const entry = f as { SenderFault?: unknown; Code?: unknown };
      return entry.SenderFault === true && !SQS_NOT_THE_MESSAGE.test(sqsCode(entry.Code));
    });
  }
  return false;
}

// ---- Kafka ---------------------------------------------------------------------------------------

/** kafkajs protocol error types (broker error codes 10, 18, 87) no retry of the same record changes. */
const KAFKA_REFUSALS = new Set(['MESSAGE_TOO_LARGE', 'RECORD_LIST_TOO_LARGE', 'INVALID_RECORD']);
const KAFKA_REFUSAL_CODES = new Set([10, 18, 87]);

function kafkaRefusal(err: Error): boolean {
  if (err.name !== 'KafkaJSProtocolError') return false;
  const { type, code } = err as Error & { type?: unknown; code?: unknown };
  return (
    (typeof type === 'string' && KAFKA_REFUSALS.has(type)) ||
    (typeof code === 'number' && KAFKA_REFUSAL_CODES.has(code))
  );
}

// ---- RabbitMQ ------------------------------------------------------------------------------------

/** RabbitMQ's text when a message is over `max_message_size` (rabbit_channel: check_msg_size). */
const AMQP_TOO_LARGE = /message size \d+ is larger than (configured )?max size/i;

function amqpRefusal(err: Error): boolean {
  const code = (err as { code?: unknown }).code;
  return (code === 406 || code === '406') && AMQP_TOO_LARGE.test(err.message);
}

// ---- The outbox's quarantine ---------------------------------------------------------------------

/**
 * The origin of a dead letter the outbox relay quarantined: an event the bus refused for good at
 * publish. A redrive publishes it again to the bus (every group), as the relay would.
 */
export const OUTBOX_ORIGIN = 'outbox';

/** The dead letter of an event the `transport` refused for good (`error`) when the relay published it. */
export function outboxDeadLetter(event: EventEnvelope, transport: Transport, error: Error): NewDeadLetter {
  const { body, headers } = encodeEvent(event);
  const now = new Date();
  return {
    id: deadLetterId({ transport, origin: OUTBOX_ORIGIN, messageId: event.eventId }),
    transport,
    origin: OUTBOX_ORIGIN,
    kind: 'event',
    messageKey: event.eventId,
    payload: body,
    headers,
    error: `refused by ${transport} for good: ${error.message}`,
    stack: error.stack ?? null,
    attempts: 1,
    correlationId: event.correlationId,
    subjectId: event.key,
    firstFailedAt: now,
    failedAt: now,
  };
}

/**
 * The event of an outbox dead letter, as the relay would publish it (with the trace context it had):
 * what a redrive publishes — `bus.publish([eventOfOutboxDeadLetter(dl)])`.
 * @throws {PoisonMessageError} when its payload is no longer a valid event.
 */
export function eventOfOutboxDeadLetter(dl: Pick<NewDeadLetter, 'payload' | 'headers'>): EventEnvelope {
  return withCarrier(decodeEvent(dl.payload), carrierFromHeaders(dl.headers));
}
