import { isCluster, type Redis } from './redis.ts';

/** The core's BullMQ queues. Every queue lives under the configured prefix (`QUEUE_PREFIX`). */
export const QueueNames = {
  /** Events, when the embedded BullMQ bus is used. */
  events: 'events',
  /** Events that exhausted their attempts on the BullMQ bus. */
  eventsDeadLetters: 'events-dead-letters',
} as const;

/** A queue name: a module's command queue or dead-letter queue, or one of {@link QueueNames}. */
export type QueueName = string;

/** The queues of a command module: its commands and their dead letters (copies for Bull Board). */
export function commandQueues(moduleName: string): { commands: string; deadLetters: string } {
  return { commands: moduleName, deadLetters: `${moduleName}-dead-letters` };
}

/**
 * The command modules a queue list is made of (the registry's, from the composition root): a module's
 * name is its command queue's (see {@link commandQueues}).
 */
export type QueueModules = readonly { readonly name: string }[];

/** Every module's command queue, in the order of `modules` (the registry's). */
export function commandQueueNames(modules: QueueModules): string[] {
  return modules.map((m) => commandQueues(m.name).commands);
}

/**
 * Whether `name` is a dead-letter queue, of one of `modules` or of the events (nothing consumes it:
 * operators look, redrive or discard).
 */
export function isDeadLetterQueue(name: string, modules: QueueModules): boolean {
  return (
    name === QueueNames.eventsDeadLetters || modules.some((m) => commandQueues(m.name).deadLetters === name)
  );
}

/** Queues shown to operators and exported as metrics: each module's two, then the event queues. */
export function allQueueNames(modules: QueueModules): QueueName[] {
  return [
    ...modules.flatMap((m) => Object.values(commandQueues(m.name))),
    QueueNames.events,
    QueueNames.eventsDeadLetters,
  ];
}

/**
 * The queue whose hash slot `name` shares on a Redis Cluster: a dead-letter queue its commands' queue,
 * every event queue (`events`, `events.<group>`, `events-dead-letters`) the `events` queue — a publish
 * adds the same jobs to every group's queue in one MULTI, which a cluster runs only within one slot.
 */
export function queueSlotFamily(name: QueueName): string {
  if (
    name === QueueNames.events ||
    name === QueueNames.eventsDeadLetters ||
    name.startsWith(`${QueueNames.events}.`)
  )
    return QueueNames.events;
  return name.endsWith('-dead-letters') ? name.slice(0, -'-dead-letters'.length) : name;
}

/**
 * BullMQ's `prefix` for queue `name` under `QUEUE_PREFIX`. One Redis: the prefix itself (keys
 * `conveyor:orders:*`, as always). A cluster: a hash tag per queue family, `{conveyor:orders}` (keys
 * `{conveyor:orders}:orders:*`), so each BullMQ script finds all its keys in one slot — BullMQ's rule
 * for clusters — while different queues spread over the masters.
 * @example new Queue('orders', { connection, prefix: bullmqPrefix(connection, 'conveyor', 'orders') })
 */
export function bullmqPrefix(connection: Redis, queuePrefix: string, name: QueueName): string {
  return isCluster(connection) ? `{${queuePrefix}:${queueSlotFamily(name)}}` : queuePrefix;
}

/**
 * `connection` and `prefix` for a BullMQ Queue or Worker of queue `name`: what every place that opens a
 * queue passes, so producers, workers, metrics and the console agree on its keys.
 * @example new Queue(name, queueOptions(redis, config.redis.queuePrefix, name))
 */
export function queueOptions<C extends Redis>(
  connection: C,
  queuePrefix: string,
  name: QueueName,
): { connection: C; prefix: string } {
  return { connection, prefix: bullmqPrefix(connection, queuePrefix, name) };
}
