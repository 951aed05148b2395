/**
 * The Kafka event bus (kafkajs 2.2).
 *
 * Publishing: an idempotent producer (acks = all, one request in flight, so retries neither
 * duplicate nor reorder), message key = order id, so one order's events share a partition and
 * keep their order. With `producer.transactionalId` set, each `publish` call is one Kafka
 * transaction instead (all or nothing; consumers read committed only). Each relay's producer id is a
 * slot, `<id>-<n>`: leased in Redis (`kafka/transactional-slot.ts`) or fixed by a StatefulSet ordinal
 * (`producer.transactionalSlot`), so relays never fence each other and the id of a relay that died
 * comes back — which is what aborts the transaction it left open (see the slot module). Without Redis
 * settings or an ordinal the id is per replica (`<id>-<hostname>-<pid>`, see `replicaTransactionalId`).
 *
 * Topics: created at start with `partitions`, `replicationFactor` and `min.insync.replicas`; existing
 * ones replicated less than configured fail the start (see `kafka/topology.ts`). With replication
 * factor 3 and min.insync.replicas 2, an acks=-1 write is confirmed only once two replicas have it.
 *
 * Measured with `bench/kafka-publish.ts` (local single-node Kafka 3.9.2, ~1 KB events, 6 partitions,
 * 2 shared cores under load, so read the ratios, not the absolutes):
 *   calls of 100 events: idempotent 2.1–2.7k events/s, transactional 1.5–1.9k events/s
 *   calls of 500 events: both 8–10k events/s (the per-transaction cost is amortized)
 *   one-event calls:     idempotent 1–4 ms, transactional 29–44 ms (AddPartitions + EndTxn markers)
 * Choice: idempotent by default. The outbox already makes publishing atomic with the write model
 * and every consumer dedupes by event id, so a transaction buys nothing but latency; it stays
 * available for deployments that want all-or-nothing batches.
 *
 * Consuming: see `kafka/subscription.ts`, an adapter of the delivery core — manual commits after the
 * effect, one key in order, retries on `<topic>.retry` (headers `x-attempt`, `x-not-before`, partition
 * paused until due), snoozes (a dependency outage, no attempt consumed) holding the partition at the
 * message, dead letters in the `dead_letters` table and then on `<topic>.dlq`.
 *
 * Groups: subscription group `projections` is consumer group `consumer.groupId` (KAFKA_GROUP_ID), any
 * other `<groupId>.<group>`; members of one consumer group share the partitions. Every group reads the
 * same three topics: a retry copy or a redriven event carries `x-consumer-group` and only that group
 * handles it (the others commit past it), so retries, dead letters and redrives stay per group. A new
 * group starts at the earliest retained offset (`fromBeginning`): it gets the retained history.
 */
import { Kafka, type Admin, type Message, type Producer } from 'kafkajs';
import type { DeadLetterRecord } from '../../dead-letters/dead-letter.ts';
import { withDeadline } from '../../runtime/deadline.ts';
import { encodeEvent } from '../codec.ts';
import type { BusDeps } from '../create-bus.ts';
import { assertGroupName, type EventBus, type EventHandler, type Subscription } from '../event-bus.ts';
import { assertAcknowledged, pinningPartitioner } from './acknowledged.ts';
import {
  currentReplica,
  kafkaClientOptions,
  replicaTransactionalId,
  type KafkaConnection,
} from './connection.ts';
import { KafkaHeaders, kafkaLogCreator, kafkaTopics, ownHeaders } from './headers.ts';
import { startKafkaSubscription } from './subscription.ts';
import { assertTopicSettings, declareKafkaTopics } from './topology.ts';
import {
  createTransactionalSlotLease,
  slotTransactionalId,
  type TransactionalSlotLease,
} from './transactional-slot.ts';

export interface KafkaBusConfig extends KafkaConnection {
  /** The events topic; `<topic>.retry` and `<topic>.dlq` are declared next to it. */
  topic: string;
  /** Partitions of each topic when the bus creates them (existing topics are left as they are). */
  partitions: number;
  /**
   * Replicas of each topic the bus creates; an existing topic with fewer fails `start()`.
   * Undefined: the broker's `default.replication.factor`.
   */
  replicationFactor?: number | undefined;
  /**
   * `min.insync.replicas` of each topic the bus creates (at most `replicationFactor`); an existing
   * topic with a lower one fails `start()`. Undefined: the broker's default.
   */
  minInsyncReplicas?: number | undefined;
  maxAttempts: number;
  backoffMs: number;
  /** First snooze delay (a dependency outage; no attempt consumed), doubling up to `snoozeMaxMs`. @defaultValue 1_000 */
  snoozeMs?: number;
  /** @defaultValue 30_000 */
  snoozeMaxMs?: number;
  /** @defaultValue 60000 */
  backoffMaxMs?: number;
  consumer: {
    /** Consumer group of the `projections` subscription; other groups get `<groupId>.<group>`. */
    groupId: string;
    /** Prefetch bound per partition. */
    maxBytesPerPartition: number;
    sessionTimeout: number;
    partitionsConsumedConcurrently: number;
    /** Fetch long-poll; also bounds how late a due retry is picked up. @defaultValue 500 */
    maxWaitTimeMs?: number;
    /** Handlers in flight per partition batch (different keys only). @defaultValue 50 */
    maxInFlightPerPartition?: number;
  };
  /**
   * Redis of the deployment (`REDIS_URL`, `REDIS_CLUSTER_NODES`, `QUEUE_PREFIX`): where transactional
   * slots are leased. Without it (and without `producer.transactionalSlot`) a transactional producer's
   * id is per replica and a crashed relay's open transaction blocks readers until it times out.
   */
  redisUrl?: string | undefined;
  redisClusterNodes?: readonly string[] | undefined;
  redisPrefix?: string | undefined;
  producer?: {
    /**
     * Publish each batch in one Kafka transaction. The same base for every replica: the producer's id
     * is `<transactionalId>-<n>`, slot n leased in Redis (`redisUrl`) or `transactionalSlot`; with
     * neither, `<transactionalId>-<hostname>-<pid>` (see `replicaTransactionalId`).
     */
    transactionalId?: string | undefined;
    /**
     * A fixed slot instead of a lease — a StatefulSet's ordinal (`apps.kubernetes.io/pod-index`). Every
     * relay of one `transactionalId` must then have its own; do not mix with leased relays.
     */
    transactionalSlot?: number | undefined;
    /** How long a leased slot outlives its relay: bounds the stall behind a crashed relay's transaction. @defaultValue 10000 */
    transactionalLeaseMs?: number | undefined;
    retry?: { retries: number; initialRetryTime: number };
    /** A send (kafkajs' own retries included) that takes longer fails and retires the producer. @defaultValue 60000 */
    sendTimeoutMs?: number;
  };
  /** How long `close()` waits for in-flight handlers before leaving them uncommitted. @defaultValue 10000 */
  shutdownGraceMs?: number;
  /** How long `subscribe` waits to join its group. @defaultValue 30000 */
  joinTimeoutMs?: number;
  /**
   * How long a consumer may keep crashing without one successful fetch before it is given up for
   * dead (`onFatal`): long enough to ride out a broker restart. @defaultValue 300000
   */
  recoveryBudgetMs?: number;
}

/** The subscription whose consumer group is `consumer.groupId` itself (the projector's name). */
const DEFAULT_GROUP = 'projections';

/** Transactional buses created in this process per base id: the n-th gets the suffix `-<n>`. */
const transactionalBuses = new Map<string, number>();

/**
 * Creates the Kafka {@link EventBus}. Nothing connects until `start()`.
 * @example
 * const bus = createKafkaBus(deps, { ...config.bus.kafka, maxAttempts: 5, backoffMs: 500 });
 * await bus.start();
 * const sub = await bus.subscribe('projections', projector.handle);
 */
export function createKafkaBus(deps: BusDeps, config: KafkaBusConfig): EventBus {
  const log = deps.logger.child({ component: 'kafka-bus', topic: config.topic });
  const topics = kafkaTopics(config.topic);
  assertTopicSettings(config);
  const baseTransactionalId = config.producer?.transactionalId || undefined;
  const transactional = baseTransactionalId !== undefined;
  const sendTimeoutMs = config.producer?.sendTimeoutMs ?? 60_000;
  const subscriptions: Subscription[] = [];
  let starting: Promise<void> | undefined;
  let closing: Promise<void> | undefined;
  // A producer runs one transaction at a time: transactional sends queue behind each other.
  let txQueue: Promise<unknown> = Promise.resolve();
  /** The connected producer; replaced after a failed send (see `withProducer`), opened by the first send. */
  let producerReady: Promise<Producer> | undefined;
  /** The transactional id the current producer uses. */
  let transactionalId: string | undefined;
  const kafka = new Kafka({
    ...kafkaClientOptions(config),
    logCreator: kafkaLogCreator(deps.logger),
    retry: config.producer?.retry ?? { retries: 5, initialRetryTime: 100 },
  });
  const admin: Admin = kafka.admin();
  const newProducer = (id: string | undefined): Producer =>
    kafka.producer({
      idempotent: true,
      maxInFlightRequests: 1,
      allowAutoTopicCreation: false,
      // kafkajs's default partitioner, recording each message's partition for `assertAcknowledged`.
      createPartitioner: pinningPartitioner,
      ...(id ? { transactionalId: id } : {}),
    });

  /**
   * Initialises a transactional producer (InitProducerId): whoever used its id before is fenced, and
   * the transaction it left open is aborted now — not at this relay's first send, nor after the
   * broker's transaction timeout.
   */
  async function initTransactions(p: Producer): Promise<void> {
    const tx = await p.transaction();
    await tx.abort();
  }

  // Where this bus's transactional id comes from: a fixed slot, a leased one, or the replica.
  let lease: TransactionalSlotLease | undefined;
  let fixedTransactionalId: string | undefined;
  if (baseTransactionalId !== undefined) {
    const slot = config.producer?.transactionalSlot;
    if (slot !== undefined) {
      if (!Number.isInteger(slot) || slot < 0)
        throw new RangeError(`transactional slot ${slot} is not an ordinal`);
      fixedTransactionalId = slotTransactionalId(baseTransactionalId, slot);
    } else if (config.redisUrl) {
      lease = createTransactionalSlotLease({
        base: baseTransactionalId,
        redisUrl: config.redisUrl,
        redisClusterNodes: config.redisClusterNodes,
        redisPrefix: config.redisPrefix ?? 'conveyor',
        leaseMs: config.producer?.transactionalLeaseMs ?? 10_000,
        logger: deps.logger,
        async fence(id) {
          const p = newProducer(id);
          try {
            await p.connect();
            await initTransactions(p);
          } finally {
            await p.disconnect().catch(() => undefined);
          }
        },
        // The slot may be someone else's now: no further send on it (the next takes a slot again).
        onLost: (id) =>
          retireProducer(producerReady, () =>
            log.warn({ transactionalId: id }, 'kafka transactional slot lost; the producer is replaced'),
          ),
      });
    } else {
      const nth = (transactionalBuses.get(baseTransactionalId) ?? 0) + 1;
      transactionalBuses.set(baseTransactionalId, nth);
      fixedTransactionalId = replicaTransactionalId(baseTransactionalId, currentReplica(), nth);
      log.warn(
        { transactionalId: fixedTransactionalId },
        'kafka transactional id per replica (no Redis for a slot lease, no slot given): a relay that dies inside a transaction blocks readers until the broker times it out',
      );
    }
  }

  async function openProducer(): Promise<Producer> {
    const id = lease ? await lease.acquire() : fixedTransactionalId;
    const p = newProducer(id);
    try {
      await p.connect();
      if (id) await initTransactions(p);
    } catch (err) {
      await p.disconnect().catch(() => undefined);
      throw err;
    }
    transactionalId = id;
    return p;
  }

  /** Drops the producer `ready` if it is still the current one: the next send opens a new one. */
  function retireProducer(ready: Promise<Producer> | undefined, logIt: () => void): void {
    if (!ready || producerReady !== ready || closing) return;
    producerReady = undefined;
    logIt();
    // Sends still in flight on the retired producer fail too; their callers retry (at least once).
    void ready.then((p) => p.disconnect()).catch(() => undefined);
  }

  /**
   * Runs `fn` with the current producer; when it fails, that producer is retired and the next send
   * gets a new one (new producer id, sequences from 0). kafkajs rolls its sequence numbers back when a
   * produce request fails even if the broker did write the batch (a response lost in a broker restart),
   * and the next, different batch then meets OUT_OF_ORDER_SEQUENCE_NUMBER — forever, kafkajs never
   * re-initialises an idempotent producer. A fresh producer re-sends at least once; every consumer
   * dedupes by event id, so nothing is lost and nothing is applied twice. A send that hangs past
   * `sendTimeoutMs` is treated the same way, so the outbox relay never waits on it forever.
   */
  async function withProducer(fn: (p: Producer) => Promise<void>): Promise<void> {
    // After close() a send would connect a producer nobody disconnects (and keep the process alive).
    if (closing) throw new Error('kafka bus is closed');
    const ready = (producerReady ??= openProducer());
    try {
      await withDeadline(
        ready.then((p) => fn(p)),
        sendTimeoutMs,
        () => new Error(`kafka send did not finish within ${sendTimeoutMs} ms`),
      );
    } catch (err) {
      retireProducer(ready, () =>
        log.warn({ err }, 'kafka send failed; the producer is replaced by a new one for the next send'),
      );
      throw err;
    }
  }

  async function send(topic: string, messages: Message[]): Promise<void> {
    // Every send is checked against what the brokers acknowledged: kafkajs can resolve a send that
    // left some partitions out when a broker died during it (see `assertAcknowledged`).
    if (!transactional) {
      await withProducer(async (p) =>
        assertAcknowledged(topic, messages, await p.send({ topic, messages, acks: -1 })),
      );
      return;
    }
    const run = txQueue.then(() =>
      withProducer(async (p) => {
        const tx = await p.transaction();
        try {
          assertAcknowledged(topic, messages, await tx.send({ topic, messages, acks: -1 }));
          await tx.commit();
        } catch (err) {
          await tx.abort().catch(() => undefined);
          throw err;
        }
      }),
    );
    txQueue = run.catch(() => undefined);
    await run;
  }

  async function declareTopology(): Promise<void> {
    await admin.connect();
    await declareKafkaTopics(admin, topics, config, log);
    await withProducer(async () => undefined); // connects it (a failed connect retires it, too)
    if (transactionalId) log.info({ transactionalId }, 'kafka transactional producer ready');
  }

  function start(): Promise<void> {
    starting ??= declareTopology().catch((err: unknown) => {
      starting = undefined; // a later call may try again
      throw err;
    });
    return starting;
  }

  return {
    kind: 'kafka',
    start,
    async publish(events) {
      if (events.length === 0) return;
      await start();
      await send(
        topics.events,
        events.map((e) => {
          const { body, headers } = encodeEvent(e);
          return { key: e.key, value: body, headers };
        }),
      );
    },
    async subscribe(group: string, handler: EventHandler): Promise<Subscription> {
      assertGroupName(group);
      await start();
      const isDefault = group === DEFAULT_GROUP;
      const sub = await startKafkaSubscription(
        {
          kafka,
          topics,
          handler,
          send,
          deadLetters: deps.deadLetters,
          onVerdict: deps.onVerdict,
          logger: deps.logger,
          onFatal: deps.onFatal,
        },
        {
          groupId: isDefault ? config.consumer.groupId : `${config.consumer.groupId}.${group}`,
          deadLetterScope: isDefault ? undefined : group,
          sessionTimeout: config.consumer.sessionTimeout,
          maxBytesPerPartition: config.consumer.maxBytesPerPartition,
          partitionsConsumedConcurrently: config.consumer.partitionsConsumedConcurrently,
          maxWaitTimeMs: config.consumer.maxWaitTimeMs ?? 500,
          maxInFlightPerPartition: config.consumer.maxInFlightPerPartition ?? 50,
          maxAttempts: config.maxAttempts,
          backoffMs: config.backoffMs,
          backoffMaxMs: config.backoffMaxMs ?? 60_000,
          snoozeMs: config.snoozeMs,
          snoozeMaxMs: config.snoozeMaxMs,
          shutdownGraceMs: config.shutdownGraceMs ?? 10_000,
          joinTimeoutMs: config.joinTimeoutMs ?? 30_000,
          recoveryBudgetMs: config.recoveryBudgetMs ?? 300_000,
        },
      );
      subscriptions.push(sub);
      return sub;
    },
    async redrive(dl: DeadLetterRecord) {
      await start();
      // Fresh attempts: the bus's own headers (attempt, error, origin) are dropped. Addressed to the
      // group that dead-lettered it, which alone handles it; the other groups skip it (they had it).
      // A dead letter recorded before groups were tracked has no group: every group gets it again.
      const group = dl.headers[KafkaHeaders.group];
      const headers = { ...ownHeaders(dl.headers), ...(group ? { [KafkaHeaders.group]: group } : {}) };
      await send(dl.origin, [{ key: dl.messageKey, value: dl.payload, headers }]);
      log.info({ deadLetterId: dl.id, group, correlationId: dl.correlationId }, 'dead letter redriven');
    },
    close: () =>
      (closing ??= (async () => {
        // Reverse start order: consumers (finishing in-flight work) before the producer they use.
        for (const sub of subscriptions.toReversed()) {
          await sub.close().catch((err: unknown) => log.error({ err }, 'kafka subscription close failed'));
        }
        // Transactional sends queue on txQueue: let the last one end before the producer goes.
        let clean = await withDeadline(
          txQueue.then(() => true),
          config.shutdownGraceMs ?? 10_000,
        ).catch(() => false);
        await producerReady
          ?.then((p) => p.disconnect())
          .catch((err: unknown) => {
            clean = false;
            log.error({ err }, 'kafka producer disconnect failed');
          });
        // After the producer: a slot freed earlier could be fenced under a send still running.
        await lease?.release(clean);
        await admin.disconnect().catch((err: unknown) => log.error({ err }, 'kafka admin disconnect failed'));
      })()),
  };
}
