import { connect, type Channel, type GetMessage } from 'amqplib';
import { deleteTopology, groupTopology, type TopologyConfig } from './topology.ts';

/** Runs `fn` on a short-lived channel of its own connection, then closes both. */
export async function withAmqpChannel<T>(url: string, fn: (channel: Channel) => Promise<T>): Promise<T> {
  const model = await connect(url);
  model.on('error', () => undefined); // the failing operation rejects; the event adds nothing
  try {
    const channel = await model.createChannel();
    channel.on('error', () => undefined);
    return await fn(channel);
  } finally {
    await model.close().catch(() => undefined);
  }
}

/**
 * Reads up to `max` messages of `queue` without removing them: they are fetched unacked and return
 * to the queue when the channel closes (marked redelivered). For inspecting a DLQ.
 */
export async function peekQueue(url: string, queue: string, max = 1_000): Promise<GetMessage[]> {
  return withAmqpChannel(url, async (channel) => {
    const messages: GetMessage[] = [];
    while (messages.length < max) {
      const msg = await channel.get(queue, { noAck: false });
      if (msg === false) break;
      messages.push(msg);
    }
    return messages;
  });
}

/**
 * Deletes the exchanges and the queues of `groups` (work, delay, `undelivered` and DLQ queues) with their messages:
 * for tests and teardown, never for a running system. Missing ones are not an error.
 */
export async function deleteRabbitmqTopology(
  url: string,
  config: TopologyConfig,
  groups: readonly string[],
): Promise<void> {
  await withAmqpChannel(url, (channel) =>
    deleteTopology(
      channel,
      config.exchange,
      groups.map((g) => groupTopology(config, g)),
    ),
  );
}
