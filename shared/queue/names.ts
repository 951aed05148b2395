import { MODULES } from '../../modules/registry.ts';

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

/** Every module's command queue, in registry order. */
export const COMMAND_QUEUES: readonly string[] = MODULES.map((m) => commandQueues(m.name).commands);

/** Whether `name` is a dead-letter queue (nothing consumes it: operators look, redrive or discard). */
export function isDeadLetterQueue(name: string): boolean {
  return (
    name === QueueNames.eventsDeadLetters || MODULES.some((m) => commandQueues(m.name).deadLetters === name)
  );
}

/** Queues shown to operators and exported as metrics: each module's two, then the event queues. */
export const ALL_QUEUES: readonly QueueName[] = [
  ...MODULES.flatMap((m) => Object.values(commandQueues(m.name))),
  QueueNames.events,
  QueueNames.eventsDeadLetters,
];
