import { createHash } from 'node:crypto';
import {
  CreateQueueCommand,
  DeleteQueueCommand,
  GetQueueAttributesCommand,
  GetQueueUrlCommand,
  SetQueueAttributesCommand,
  type SQSClient,
} from '@aws-sdk/client-sqs';
import { isQueueMissing, isQueueNameTaken } from './client.ts';

/** SQS queue names: letters, digits, `-`, `_`, at most 80 characters (`.fifo` included). */
const MAX_NAME = 80;
const DLQ_SUFFIX = '-dlq';
const FIFO_SUFFIX = '.fifo';
/** The longest SQS retention (14 days): a stopped group or an unhandled dead letter keeps its messages. */
const RETENTION_SECONDS = 1_209_600;

/** The queues of one subscription group. */
export interface GroupQueueNames {
  group: string;
  /** `<prefix>-<group>` (`.fifo`): the group's work queue. */
  queue: string;
  /** `<prefix>-<group>-dlq` (`.fifo`): its dead-letter queue and redrive-policy target. */
  dlq: string;
}

/** A group's queues, declared: names and URLs. */
export interface GroupQueues extends GroupQueueNames {
  queueUrl: string;
  dlqUrl: string;
}

/**
 * Names the queues of `group` under `prefix`. Group names may hold `.`, which SQS names may not: a
 * group with one (or a name too long for SQS) becomes `_`-for-`.`, cut to fit, plus 8 hex digits of
 * its hash, so two groups never share a queue. Deterministic: every process derives the same names.
 */
export function groupQueueNames(prefix: string, group: string, fifo: boolean): GroupQueueNames {
  const tail = fifo ? FIFO_SUFFIX : '';
  let base = `${prefix}-${group}`;
  if (group.includes('.') || base.length + DLQ_SUFFIX.length + tail.length > MAX_NAME) {
    const hash = createHash('sha256').update(group).digest('hex').slice(0, 8);
    const room = MAX_NAME - DLQ_SUFFIX.length - tail.length - hash.length - 1;
    base = `${base.replaceAll('.', '_').slice(0, room)}-${hash}`;
  }
  return { group, queue: `${base}${tail}`, dlq: `${base}${DLQ_SUFFIX}${tail}` };
}

export interface DeclareOptions {
  fifo: boolean;
  visibilityTimeoutSeconds: number;
  /** Receives of one message before SQS itself moves it to the DLQ (the redrive policy). */
  maxReceiveCount: number;
}

/**
 * Creates `name` with `attributes`, or — when it exists with other attributes (SQS refuses the
 * create) — sets the ones that may change on an existing queue, so a new visibility timeout or
 * attempt limit takes effect instead of failing the start. Returns its URL.
 */
async function ensureQueue(
  client: SQSClient,
  name: string,
  attributes: Record<string, string>,
  mutable: readonly string[],
): Promise<string> {
  try {
    const { QueueUrl } = await client.send(
      new CreateQueueCommand({ QueueName: name, Attributes: attributes }),
    );
    if (!QueueUrl) throw new Error(`CreateQueue ${name} answered no QueueUrl`);
    return QueueUrl;
  } catch (err) {
    if (!isQueueNameTaken(err)) throw err;
  }
  const { QueueUrl } = await client.send(new GetQueueUrlCommand({ QueueName: name }));
  if (!QueueUrl) throw new Error(`GetQueueUrl ${name} answered no QueueUrl`);
  const changes = Object.fromEntries(Object.entries(attributes).filter(([k]) => mutable.includes(k)));
  await client.send(new SetQueueAttributesCommand({ QueueUrl, Attributes: changes }));
  return QueueUrl;
}

/**
 * Declares a group's DLQ, then its work queue with a redrive policy into it; idempotent. FIFO queues
 * get high-throughput mode (deduplication and throughput limits per message group, i.e. per order).
 */
export async function declareGroupQueues(
  client: SQSClient,
  names: GroupQueueNames,
  options: DeclareOptions,
): Promise<GroupQueues> {
  const fifo: Record<string, string> = options.fifo
    ? { FifoQueue: 'true', DeduplicationScope: 'messageGroup', FifoThroughputLimit: 'perMessageGroupId' }
    : {};
  const dlqUrl = await ensureQueue(
    client,
    names.dlq,
    { ...fifo, MessageRetentionPeriod: String(RETENTION_SECONDS) },
    [],
  );
  const { Attributes } = await client.send(
    new GetQueueAttributesCommand({ QueueUrl: dlqUrl, AttributeNames: ['QueueArn'] }),
  );
  const dlqArn = Attributes?.QueueArn;
  if (!dlqArn) throw new Error(`GetQueueAttributes ${names.dlq} answered no QueueArn`);
  const queueUrl = await ensureQueue(
    client,
    names.queue,
    {
      ...fifo,
      MessageRetentionPeriod: String(RETENTION_SECONDS),
      VisibilityTimeout: String(options.visibilityTimeoutSeconds),
      RedrivePolicy: JSON.stringify({
        deadLetterTargetArn: dlqArn,
        maxReceiveCount: options.maxReceiveCount,
      }),
    },
    ['VisibilityTimeout', 'RedrivePolicy'],
  );
  return { ...names, queueUrl, dlqUrl };
}

/** The URL of queue `name` (which must exist). */
export async function queueUrlOf(client: SQSClient, name: string): Promise<string> {
  const { QueueUrl } = await client.send(new GetQueueUrlCommand({ QueueName: name }));
  if (!QueueUrl) throw new Error(`GetQueueUrl ${name} answered no QueueUrl`);
  return QueueUrl;
}

/** Deletes a group's queues with their messages (tests, teardown); missing ones are not an error. */
export async function deleteGroupQueues(client: SQSClient, names: GroupQueueNames): Promise<void> {
  for (const name of [names.queue, names.dlq]) {
    try {
      await client.send(new DeleteQueueCommand({ QueueUrl: await queueUrlOf(client, name) }));
    } catch (err) {
      if (!isQueueMissing(err)) throw err;
    }
  }
}
