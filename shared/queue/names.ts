/** BullMQ queue names. Every queue lives under the configured prefix (`QUEUE_PREFIX`). */
export const QueueNames = {
  /** Commands posted by producers. */
  orders: 'orders',
  /** Order commands that exhausted their attempts or could never be processed. */
  ordersDeadLetters: 'orders-dead-letters',
  /** Events, when the embedded BullMQ bus is used. */
  events: 'events',
  /** Events that exhausted their attempts on the BullMQ bus. */
  eventsDeadLetters: 'events-dead-letters',
} as const;
export type QueueName = (typeof QueueNames)[keyof typeof QueueNames];

/** Queues shown to operators and exported as metrics. */
export const ALL_QUEUES: readonly QueueName[] = Object.values(QueueNames);
