/**
 * The RabbitMQ event bus.
 *
 * Topology (declared idempotently by `start()` for the default group, by `subscribe()` for others):
 * - `<exchange>`: durable topic exchange; routing key = event type.
 * - `<queue>` per consumer group (`config.queue` for `defaultGroup`, `<exchange>.<group>` otherwise):
 *   durable, quorum when the broker supports it, bound with `#`. A message the quorum queue gives up
 *   on by itself (past `x-delivery-limit`) goes through `<exchange>.dlx` to `<queue>.undelivered`,
 *   which the consumer drains into the dead letters — never straight to the DLQ, never dropped.
 * - `<queue>.retry.<ttl>ms`: classic delay queues, one per TTL, that dead-letter back to `<queue>`
 *   through the default exchange: retries, snoozes and parks without a plugin. The TTLs are the
 *   delivery policy's backoff ceilings (retry: base·2^(n-1), snooze: snoozeMs·2^(n-1), capped).
 * - `<queue>.dlq`: the native dead letters, each copied there (with `x-error`, `x-attempts`,
 *   `x-origin-queue`) only after its `dead_letters` row was recorded.
 *
 * Guarantees:
 * - Publish resolves only once the broker confirmed every message (persistent, mandatory); it rejects
 *   on nack, return (no queue bound), channel/connection loss or our own `confirmTimeoutMs`, and never
 *   reconnects behind the caller's back for a batch: the outbox relay retries, duplicates are harmless.
 * - What happens on a failure is the delivery core's decision (`shared/delivery`), the same on every
 *   bus; the consumer (`rabbitmq/consumer.ts`) is its adapter. At-least-once delivery: a message is
 *   acked only after its handler resolved, or after its hand-back copy (retry, snooze, park) was
 *   confirmed, or after its dead letter was recorded and copied to the DLQ. A crash or a lost
 *   connection before that makes the broker redeliver it. Consumers must be idempotent.
 * - Ordering: RabbitMQ hands out one queue in FIFO order, but with `prefetch` > 1 up to `prefetch`
 *   handlers run concurrently and finish in any order; a retried event comes back after its delay,
 *   behind later events; a requeued (crash) delivery may come after later ones. So there is NO per-key
 *   (per-order) ordering guarantee; the projector is order-insensitive by design (inbox + strongest
 *   state wins). With `prefetch` = 1 and one consumer, events are handled in publish order except
 *   around retries and redeliveries.
 * - A lost consumer connection is re-established with exponential backoff, topology redeclared, for
 *   up to `recoveryBudgetMs`; a consumer that cannot (or whose re-declare the broker refuses: 406,
 *   403) gives up and tells `deps.onFatal`.
 */
import type { ChannelModel, ConfirmChannel } from 'amqplib';
import type { DeadLetterRecord } from '../../dead-letters/dead-letter.ts';
import { EventHeaders } from '../codec.ts';
import type { BusDeps } from '../create-bus.ts';
import { assertGroupName, type EventBus, type EventHandler, type Subscription } from '../event-bus.ts';
import {
  ConfirmTimeoutError,
  createConfirmPublisher,
  type ConfirmPublisher,
  type OutgoingMessage,
} from './confirm.ts';
import { forceCloseConnection, openAmqpConnection, whenClosed } from './connection.ts';
import { createConsumer, type Consumer } from './consumer.ts';
import { eventMessage, originalHeaders } from './messages.ts';
import {
  declareExchanges,
  declareGroup,
  detectQueueType,
  groupTopology,
  type TopologyConfig,
} from './topology.ts';

export { ConfirmTimeoutError, UnroutableError } from './confirm.ts';
export { RabbitmqHeaders } from './messages.ts';

export interface RabbitmqBusConfig {
  url: string;
  exchange: string;
  /** Work queue of `defaultGroup`. */
  queue: string;
  /** Unacked deliveries per consumer: the bound on concurrent handlers. */
  prefetch: number;
  /** Our own deadline for publisher confirms (amqplib waits forever on a dead link). */
  confirmTimeoutMs: number;
  maxAttempts: number;
  /** First retry delay; doubles per attempt up to `maxBackoffMs`. */
  backoffMs: number;
  /** First snooze delay (a dependency outage; no attempt consumed), doubling up to `snoozeMaxMs`. @defaultValue 1_000 */
  snoozeMs?: number;
  /** @defaultValue 30_000 */
  snoozeMaxMs?: number;
  /** The group whose queue is `queue`, declared by `start()` so events published before the first subscribe are kept. @defaultValue 'projections' */
  defaultGroup?: string;
  /** @defaultValue 60_000 */
  maxBackoffMs?: number;
  /**
   * Deliveries without an ack (crashes, lost connections) after which the consumer dead-letters a
   * message itself, with a row; also the quorum queue's `x-delivery-limit` (fixed once a queue
   * exists: the broker refuses a re-declare with another one). @defaultValue 20
   */
  deliveryLimit?: number;
  /** @defaultValue 10 */
  heartbeatSeconds?: number;
  /** @defaultValue 5_000 */
  connectTimeoutMs?: number;
  /** How long close() waits for in-flight handlers. @defaultValue 10_000 */
  shutdownGraceMs?: number;
  /** Consumer reconnect backoff bounds. @defaultValue 100 and 10_000 */
  reconnectMinMs?: number;
  reconnectMaxMs?: number;
  /**
   * How long a consumer may fail to reconnect before it gives up (`onFatal`); a broker that refuses
   * our topology or credentials (406, 403) ends it at once. @defaultValue 300_000
   */
  recoveryBudgetMs?: number;
  /** Prefix of the connection names shown by the broker. @defaultValue 'conveyor' */
  connectionName?: string;
}

/** Publish, subscribe or redrive on a closed bus. */
export class BusClosedError extends Error {
  override readonly name = 'BusClosedError';
  constructor() {
    super('the RabbitMQ bus is closed');
  }
}

const DEFAULTS = {
  defaultGroup: 'projections',
  maxBackoffMs: 60_000,
  snoozeMs: 1_000,
  snoozeMaxMs: 30_000,
  deliveryLimit: 20,
  heartbeatSeconds: 10,
  connectTimeoutMs: 5_000,
  shutdownGraceMs: 10_000,
  reconnectMinMs: 100,
  reconnectMaxMs: 10_000,
  recoveryBudgetMs: 300_000,
  connectionName: 'conveyor',
} satisfies Partial<RabbitmqBusConfig>;

function withDefaults(config: RabbitmqBusConfig): Required<RabbitmqBusConfig> {
  const defined = Object.fromEntries(Object.entries(config).filter(([, v]) => v !== undefined));
  return { ...DEFAULTS, ...defined } as Required<RabbitmqBusConfig>;
}

/**
 * The exchange and queue names a bus with `config` declares; pass it to `deleteRabbitmqTopology`
 * (shared/bus/rabbitmq/admin.ts) to tear them down, or to `groupTopology` to name a group's queues.
 * The delay queues are named after their TTLs: pass the bus's backoff and snooze settings too.
 */
export function rabbitmqTopology(config: RabbitmqBusConfig): TopologyConfig {
  const c = withDefaults(config);
  return {
    exchange: c.exchange,
    queue: c.queue,
    defaultGroup: c.defaultGroup,
    maxAttempts: c.maxAttempts,
    backoffMs: c.backoffMs,
    maxBackoffMs: c.maxBackoffMs,
    snoozeMs: c.snoozeMs,
    snoozeMaxMs: c.snoozeMaxMs,
  };
}

interface PublisherSession {
  model: ChannelModel;
  channel: ConfirmChannel;
  publisher: ConfirmPublisher;
  /** Settles when the connection or the channel closes. */
  closed: Promise<Error | undefined>;
}

/**
 * Creates the RabbitMQ {@link EventBus}: one publisher connection (opened lazily, replaced after a
 * failure) and one connection per subscription, so publisher flow control never stalls acks.
 * @example
 * const bus = createRabbitmqBus({ logger, deadLetters }, { ...config.bus.rabbitmq, maxAttempts: 5, backoffMs: 500 });
 * await bus.start();
 * const sub = await bus.subscribe('projections', projector.handle);
 */
export function createRabbitmqBus(deps: BusDeps, config: RabbitmqBusConfig): EventBus {
  const c = withDefaults(config);
  const log = deps.logger.child({ component: 'rabbitmq-bus', exchange: c.exchange });
  const topologyConfig = rabbitmqTopology(c);
  const consumers = new Set<Consumer>();
  let publisher: Promise<PublisherSession> | undefined;
  let closing: Promise<void> | undefined;

  const connect = (role: string) =>
    openAmqpConnection(
      {
        url: c.url,
        connectionName: `${c.connectionName}-${role}`,
        heartbeatSeconds: c.heartbeatSeconds,
        connectTimeoutMs: c.connectTimeoutMs,
      },
      log,
    );

  async function openPublisher(): Promise<PublisherSession> {
    const model = await connect('publisher');
    try {
      const channel = await model.createConfirmChannel();
      channel.on('error', (err: Error) => log.warn({ err }, 'amqp publisher channel error'));
      // Listen before anything else can happen, so no close goes unnoticed.
      const closed = whenClosed(model, channel);
      return { model, channel, publisher: createConfirmPublisher(channel), closed };
    } catch (err) {
      await forceCloseConnection(model, 1_000);
      throw err;
    }
  }

  /** The live publisher session, opened on demand; forgotten as soon as it closes or fails. */
  function publisherSession(): Promise<PublisherSession> {
    if (closing) return Promise.reject(new BusClosedError());
    if (publisher) return publisher;
    const opening = openPublisher();
    publisher = opening;
    const forget = () => {
      if (publisher === opening) publisher = undefined;
    };
    opening.then(
      (s) =>
        void s.closed.then((err) => {
          forget();
          if (!closing) log.warn({ err }, 'amqp publisher connection closed; the next publish reconnects');
          void forceCloseConnection(s.model, 1_000); // a closed channel leaves its connection open
        }),
      forget,
    );
    return opening;
  }

  async function send(messages: readonly OutgoingMessage[]): Promise<void> {
    const opening = publisherSession();
    const session = await opening;
    try {
      await session.publisher.publish(messages, c.confirmTimeoutMs);
    } catch (err) {
      // No confirm in time: the link is likely dead without the socket knowing. Drop it so the next
      // publish reconnects; confirms still pending on it fail, and their callers retry too.
      if (err instanceof ConfirmTimeoutError) {
        if (publisher === opening) publisher = undefined;
        void forceCloseConnection(session.model, 0);
      }
      throw err;
    }
  }

  return {
    kind: 'rabbitmq',

    async start() {
      const { model, channel } = await publisherSession();
      await declareExchanges(channel, c.exchange);
      await declareGroup(channel, c.exchange, groupTopology(topologyConfig, c.defaultGroup), {
        queueType: detectQueueType(model),
        deliveryLimit: c.deliveryLimit,
      });
      log.info({ queue: c.queue }, 'rabbitmq bus started');
    },

    async publish(events) {
      if (closing) throw new BusClosedError();
      if (events.length === 0) return;
      await send(events.map((e) => eventMessage(c.exchange, e)));
    },

    async subscribe(group: string, handler: EventHandler): Promise<Subscription> {
      if (closing) throw new BusClosedError();
      assertGroupName(group);
      const consumer = createConsumer({
        topology: groupTopology(topologyConfig, group),
        topologyConfig,
        connect: () => connect(`consumer-${group}`),
        handler,
        deadLetters: deps.deadLetters,
        onVerdict: deps.onVerdict,
        log,
        prefetch: c.prefetch,
        policy: {
          maxAttempts: c.maxAttempts,
          backoffMs: c.backoffMs,
          backoffMaxMs: c.maxBackoffMs,
          snoozeMs: c.snoozeMs,
          snoozeMaxMs: c.snoozeMaxMs,
        },
        deliveryLimit: c.deliveryLimit,
        confirmTimeoutMs: c.confirmTimeoutMs,
        shutdownGraceMs: c.shutdownGraceMs,
        reconnectMinMs: c.reconnectMinMs,
        reconnectMaxMs: c.reconnectMaxMs,
        recoveryBudgetMs: c.recoveryBudgetMs,
        onFatal: deps.onFatal,
      });
      await consumer.start();
      consumers.add(consumer);
      return {
        close: async () => {
          await consumer.close();
          consumers.delete(consumer);
        },
      };
    },

    async redrive(dl: DeadLetterRecord) {
      if (closing) throw new BusClosedError();
      if (dl.transport !== 'rabbitmq')
        throw new Error(`dead letter ${dl.id} came from ${dl.transport}, not rabbitmq`);
      const headers = originalHeaders(dl.headers);
      const options: OutgoingMessage['options'] = {
        messageId: headers[EventHeaders.eventId] ?? dl.messageKey ?? dl.id,
        deliveryMode: 2,
        contentType: 'application/json',
        headers,
      };
      const correlationId = headers[EventHeaders.correlationId] ?? dl.correlationId;
      if (correlationId) options.correlationId = correlationId;
      const type = headers[EventHeaders.eventType];
      if (type) options.type = type;
      // Straight to the origin queue through the default exchange: other groups already have it.
      await send([{ exchange: '', routingKey: dl.origin, content: dl.payload, options }]);
      log.info({ deadLetterId: dl.id, origin: dl.origin, correlationId }, 'dead letter redriven');
    },

    close() {
      closing ??= (async () => {
        for (const consumer of [...consumers].reverse()) {
          await consumer
            .close()
            .catch((err: unknown) => log.error({ err }, 'closing a rabbitmq consumer failed'));
        }
        const session = await publisher?.catch(() => undefined);
        publisher = undefined;
        if (session) await forceCloseConnection(session.model, Math.min(5_000, c.shutdownGraceMs));
      })();
      return closing;
    },
  };
}
