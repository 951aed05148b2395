import {
  ChangeMessageVisibilityBatchCommand,
  ReceiveMessageCommand,
  type Message,
  type SQSClient,
} from '@aws-sdk/client-sqs';
import { createSqsClient, isQueueMissing } from './client.ts';
import { deleteGroupQueues, groupQueueNames, queueUrlOf } from './topology.ts';

export interface SqsAdminTarget {
  endpoint: string;
  region: string;
}

/** Runs `fn` with a short-lived SQS client, then destroys it. */
export async function withSqsClient<T>(
  target: SqsAdminTarget,
  fn: (client: SQSClient) => Promise<T>,
): Promise<T> {
  const client = createSqsClient({ endpoint: target.endpoint, region: target.region });
  try {
    return await fn(client);
  } finally {
    client.destroy();
  }
}

/**
 * Reads up to `max` messages of queue `name` without removing them: received (so invisible while this
 * runs, each once), then made visible again. For inspecting a DLQ; a missing queue reads as empty.
 * Each read counts as a receive of those messages.
 */
export async function peekQueue(target: SqsAdminTarget, name: string, max = 1_000): Promise<Message[]> {
  return withSqsClient(target, async (client) => {
    let url: string;
    try {
      url = await queueUrlOf(client, name);
    } catch (err) {
      if (isQueueMissing(err)) return [];
      throw err;
    }
    const seen = new Map<string, Message>();
    while (seen.size < max) {
      const { Messages = [] } = await client.send(
        new ReceiveMessageCommand({
          QueueUrl: url,
          MaxNumberOfMessages: Math.min(10, max - seen.size),
          WaitTimeSeconds: 0,
          VisibilityTimeout: 30,
          MessageAttributeNames: ['All'],
          MessageSystemAttributeNames: ['All'],
        }),
      );
      if (Messages.length === 0) break;
      for (const m of Messages) if (m.MessageId) seen.set(m.MessageId, m);
    }
    const all = [...seen.values()];
    for (let i = 0; i < all.length; i += 10) {
      await client.send(
        new ChangeMessageVisibilityBatchCommand({
          QueueUrl: url,
          Entries: all.slice(i, i + 10).map((m, n) => ({
            Id: String(n),
            ReceiptHandle: m.ReceiptHandle,
            VisibilityTimeout: 0,
          })),
        }),
      );
    }
    return all;
  });
}

/**
 * Deletes the work queues and DLQs of `groups` with their messages: for tests and teardown, never for
 * a running system. Missing ones are not an error. (The group registry in Redis is left alone.)
 */
export async function deleteSqsTopology(
  target: SqsAdminTarget,
  config: { queuePrefix: string; fifo: boolean },
  groups: readonly string[],
): Promise<void> {
  await withSqsClient(target, async (client) => {
    for (const group of groups)
      await deleteGroupQueues(client, groupQueueNames(config.queuePrefix, group, config.fifo));
  });
}
