import { Counter, Gauge, type Registry } from 'prom-client';
import type { Redis } from '../queue/redis.ts';
import {
  createKafkaLagReader,
  createRabbitmqDepthReader,
  type BusReader,
  type KafkaLagOptions,
  type PartitionLag,
  createSqsDepthReader,
  type RabbitmqDepthOptions,
  type RabbitQueueDepth,
  type SqsDepthOptions,
  type SqsQueueDepth,
} from './bus-lag.ts';
import {
  createQueueStatsReader,
  type QueueStatsOptions,
  type QueueStatsReader,
  type QueueTenants,
} from './queue-stats.ts';
import { createTenantThroughputMeter, type TenantThroughput } from './tenant-throughput.ts';
import { withDeadline } from '../runtime/deadline.ts';
import { isDeadLetterQueue } from '../queue/names.ts';
import {
  createKafkaTopicSizeReader,
  isRabbitmqDlq,
  isSqsDlq,
  kafkaDlqOf,
  type NativeDlqTransport,
  type TopicSize,
} from './native-dlq.ts';

/** Unpublished outbox rows, as `workers/outbox/relay.sql.ts#outboxBacklog` reads them. */
export interface OutboxBacklog {
  count: number;
  oldestAgeSeconds: number;
}

/** A read replica's lag, as `shared/db/read-pools.ts#replicaLag` reads it. */
export interface ReplicaLagSample {
  bytes: number;
  seconds: number;
}

/** Counts the query side's reads where a read replica is configured. */
export interface ReplicaReadCounters {
  /** A read (or lookup) sent to the replica. */
  read(): void;
  /** A read the primary answered: ids the replica had not replayed (`miss`), or a replica `error`. */
  fallback(reason: 'miss' | 'error'): void;
}

/**
 * The `tenant` label of the tenants the per-tenant metrics do not name, summed. Parentheses are not
 * allowed in a tenant id (an API key id, or `<key id>/<sub>`), so no tenant can be mistaken for it.
 */
export const OTHER_TENANTS = '(other)';

/** {@link Collectors.watchQueues}'s options: the queue reader's, and how many tenants to name. */
export interface WatchQueuesOptions extends QueueStatsOptions {
  /**
   * Tenants named per command queue in the `conveyor_tenant_*` metrics (the largest backlogs; the
   * rest are {@link OTHER_TENANTS}): `FAIRNESS_METRICS_TOP`. @defaultValue 10
   */
  tenantsTop?: number;
}

/** What a pg `Pool` exposes about its clients. */
export interface PoolCounts {
  readonly totalCount: number;
  readonly idleCount: number;
  readonly waitingCount: number;
}

/**
 * Gauges read on scrape: queue depths, outbox backlog, bus lag, pool and connection stats. Each
 * `watch*` registers a source once (later calls are no-ops); each read is bounded by the timeout, and
 * a source that fails or times out drops its series and sets `conveyor_metrics_collector_up{collector}`
 * to 0 instead of failing the scrape.
 */
export interface Collectors {
  /**
   * Queue depths (failed sets included) and oldest-waiting ages of every queue — and of every
   * registered BullMQ event group's `events.<group>` queue, unless `queues` is given; the copies in
   * the `*-dead-letters` queues are also `conveyor_native_dlq_messages{transport="bullmq"}`. Returns
   * the reader (the scaling endpoint shares it).
   *
   * Per command queue with fairness, in the same read (`FairQueue.backlog`): the `tenantsTop` tenants
   * with the most commands waiting their turn, and the rest as `tenant="(other)"` —
   * `conveyor_tenant_backlog`, `_oldest_wait_seconds`, `_in_flight` (tenants with a limit),
   * `_throughput` (started per second between this process's reads) — and
   * `conveyor_fairness_started_total`. A tenant that leaves the top loses its series at once.
   */
  watchQueues(options: WatchQueuesOptions): QueueStatsReader;
  watchOutbox(read: () => Promise<OutboxBacklog>): void;
  watchPgPool(name: string, pool: PoolCounts): void;
  watchRedis(name: string, redis: Pick<Redis, 'status'>): void;
  /**
   * Only where DATABASE_READ_URL is set: the replica's lag, read on scrape, and the counters of the
   * reads sent to it or answered by the primary instead.
   */
  watchPgReplica(readLag: () => Promise<ReplicaLagSample>): ReplicaReadCounters;
  /**
   * Only where EVENT_BUS=kafka. Also the messages each events topic's dead-letter topic holds
   * (`<topic>.dlq` of every topic but `.retry` ones, or `deadLetterTopics`), as
   * `conveyor_native_dlq_messages{transport="kafka"}` (collector `kafka_dlq`).
   */
  watchKafkaLag(options: KafkaLagOptions & { deadLetterTopics?: readonly string[] }): void;
  /**
   * Only where EVENT_BUS=rabbitmq. The queues among `queues` that are dead-letter queues (named
   * `<queue>.dlq`, or `deadLetterQueues`) are also `conveyor_native_dlq_messages{transport="rabbitmq"}`.
   */
  watchRabbitmq(options: RabbitmqDepthOptions & { deadLetterQueues?: readonly string[] }): void;
  /**
   * Only where EVENT_BUS=sqs. The queues among `queues` that are dead-letter queues (named
   * `…-dlq[.fifo]`, or `deadLetterQueues`) are also `conveyor_native_dlq_messages{transport="sqs"}`:
   * visible, in-flight and delayed together.
   */
  watchSqs(options: SqsDepthOptions & { deadLetterQueues?: readonly string[] }): void;
  /** Closes the readers the watchers created. */
  close(): Promise<void>;
}

type SourceKind = 'queues' | 'outbox' | 'pg_replica' | 'kafka' | 'kafka_dlq' | 'rabbitmq' | 'sqs';

/** The scrape-time half of a process's registry (`createMetrics` composes it). */
export function createCollectors(registry: Registry, timeoutMs: number): Collectors {
  const registers = [registry];

  // Scrape-time sources. Every gauge fed by a source awaits that source's refresh; refreshes started
  // in the same scrape share one read (prom-client collects all metrics concurrently).
  const sources = new Map<SourceKind, { refresh(): Promise<void>; close(): Promise<void> }>();
  const refresh = async (kind: SourceKind) => sources.get(kind)?.refresh();
  const up = new Gauge({
    name: 'conveyor_metrics_collector_up',
    help: 'Whether the last scrape-time read of a collector succeeded within the timeout (1) or not (0)',
    labelNames: ['collector'],
    registers,
    collect: async () => void (await Promise.all([...sources.values()].map((s) => s.refresh()))),
  });
  /**
   * `read` does the I/O and returns a `commit` that sets the gauges; a read that outlives the timeout
   * is never committed, so a late answer cannot overwrite the cleared series.
   */
  function addSource(
    kind: SourceKind,
    read: () => Promise<() => void>,
    clear: () => void,
    release = async () => {},
  ) {
    let inflight: Promise<void> | undefined;
    sources.set(kind, {
      refresh: () =>
        (inflight ??= withDeadline(read(), timeoutMs)
          .then(
            (commit) => {
              commit();
              up.set({ collector: kind }, 1);
            },
            () => {
              clear();
              up.set({ collector: kind }, 0);
            },
          )
          .finally(() => (inflight = undefined))),
      close: release,
    });
  }

  let queueReader: QueueStatsReader | undefined;
  const queueJobs = new Gauge({
    name: 'conveyor_queue_jobs',
    help: 'BullMQ jobs by queue and state (waiting, prioritized, held: waiting their tenant turn, delayed: other delayed jobs, active, failed, completed, waiting-children)',
    labelNames: ['queue', 'state'],
    registers,
    collect: () => refresh('queues'),
  });
  const oldestWaiting = new Gauge({
    name: 'conveyor_queue_oldest_waiting_age_seconds',
    help: 'Age of the oldest job waiting to run (wait list tail, next prioritized, or oldest held for its tenant turn), 0 when none waits',
    labelNames: ['queue'],
    registers,
    collect: () => refresh('queues'),
  });
  const queuePaused = new Gauge({
    name: 'conveyor_queue_paused',
    help: 'Whether the queue is paused (1) or not (0)',
    labelNames: ['queue'],
    registers,
    collect: () => refresh('queues'),
  });

  // Per-tenant fairness: bounded by the top N per command queue plus one "(other)" series each.
  const tenantBacklog = new Gauge({
    name: 'conveyor_tenant_backlog',
    help: 'Commands waiting their turn in a command queue, per tenant: the FAIRNESS_METRICS_TOP tenants with the most, and tenant="(other)" for the rest summed',
    labelNames: ['queue', 'tenant'],
    registers,
    collect: () => refresh('queues'),
  });
  const tenantOldestWait = new Gauge({
    name: 'conveyor_tenant_oldest_wait_seconds',
    help: 'How long the oldest command waiting its turn has waited, per tenant as conveyor_tenant_backlog names them ("(other)": the oldest of the rest); 0 when none waits',
    labelNames: ['queue', 'tenant'],
    registers,
    collect: () => refresh('queues'),
  });
  const tenantInFlight = new Gauge({
    name: 'conveyor_tenant_in_flight',
    help: 'Commands handed to the workers and not yet decided, for the tenants conveyor_tenant_backlog names that have an in-flight limit (max_in_flight)',
    labelNames: ['queue', 'tenant'],
    registers,
    collect: () => refresh('queues'),
  });
  const tenantThroughput = new Gauge({
    name: 'conveyor_tenant_throughput',
    help: 'Commands handed to the workers per second, per tenant as conveyor_tenant_backlog names them, between two reads of the monotonic counters in Redis (at least 5 s apart); a tenant new to the top counts in "(other)" until the next read',
    labelNames: ['queue', 'tenant'],
    registers,
    collect: () => refresh('queues'),
  });
  const fairStarted = new Counter({
    name: 'conveyor_fairness_started_total',
    help: 'Commands handed to the workers through a command queue fair queue (straight in, or at their turn), read from its counter in Redis',
    labelNames: ['queue'],
    registers,
    collect: () => refresh('queues'),
  });
  const tenantGauges = [tenantBacklog, tenantOldestWait, tenantInFlight, tenantThroughput];
  /** Replaces every per-tenant series with one read's (a tenant out of the top keeps none). */
  function setTenants(read: readonly QueueTenants[], rates: ReadonlyMap<string, TenantThroughput | null>) {
    tenantGauges.forEach((g) => g.reset());
    fairStarted.reset();
    for (const { stats, tenants, at } of read) {
      if (!tenants) continue;
      const queue = stats.queue;
      const age = (oldestAt: number | null) => (oldestAt === null ? 0 : Math.max(0, (at - oldestAt) / 1_000));
      for (const t of tenants.tenants) {
        const labels = { queue, tenant: t.tenant };
        tenantBacklog.set(labels, t.waiting);
        tenantOldestWait.set(labels, age(t.oldestAt));
        if (t.maxInFlight > 0) tenantInFlight.set(labels, t.inFlight);
      }
      const other = { queue, tenant: OTHER_TENANTS };
      tenantBacklog.set(other, tenants.others.waiting);
      tenantOldestWait.set(other, age(tenants.others.oldestAt));
      const rate = rates.get(queue);
      if (rate) {
        for (const t of tenants.tenants) {
          const r = rate.tenants.get(t.tenant);
          if (r !== undefined) tenantThroughput.set({ queue, tenant: t.tenant }, r);
        }
        tenantThroughput.set(other, rate.others);
      }
      // The counter is Redis's, shared by every process: exported as read (a reset is a new counter).
      fairStarted.inc({ queue }, tenants.startedTotal);
    }
  }

  const kafkaLag = new Gauge({
    name: 'conveyor_kafka_consumer_group_lag',
    help: 'Messages between a consumer group committed offset and the partition high watermark',
    labelNames: ['group', 'topic', 'partition'],
    registers,
    collect: () => refresh('kafka'),
  });
  const rabbitMessages = new Gauge({
    name: 'conveyor_rabbitmq_queue_messages',
    help: 'Messages ready for delivery in a RabbitMQ queue',
    labelNames: ['queue'],
    registers,
    collect: () => refresh('rabbitmq'),
  });
  const sqsMessages = new Gauge({
    name: 'conveyor_sqs_queue_messages',
    help: 'Approximate messages in an SQS queue by state: visible (the backlog), in_flight (received, not deleted), delayed',
    labelNames: ['queue', 'state'],
    registers,
    collect: () => refresh('sqs'),
  });
  const nativeDlq = new Gauge({
    name: 'conveyor_native_dlq_messages',
    help: "Messages in a transport's own dead-letter place: BullMQ *-dead-letters queues (copies of pending dead letters), RabbitMQ <queue>.dlq, SQS DLQs (approximate), Kafka <topic>.dlq (retained). Each should have a dead_letters row; a broker that dead-letters by itself leaves none",
    labelNames: ['transport', 'queue'],
    registers,
    collect: async () =>
      void (await Promise.all((['queues', 'rabbitmq', 'sqs', 'kafka_dlq'] as const).map(refresh))),
  });
  /** One transport's series of {@link nativeDlq}, replaced as a whole on each read (other transports' stay). */
  const dlqSeries = (transport: NativeDlqTransport) => {
    let last: string[] = [];
    const clear = () => {
      for (const queue of last) nativeDlq.remove({ transport, queue });
      last = [];
    };
    return {
      clear,
      replace(values: readonly { queue: string; messages: number }[]) {
        clear();
        for (const v of values) nativeDlq.set({ transport, queue: v.queue }, v.messages);
        last = values.map((v) => v.queue);
      },
    };
  };
  const rabbitConsumers = new Gauge({
    name: 'conveyor_rabbitmq_queue_consumers',
    help: 'Consumers attached to a RabbitMQ queue',
    labelNames: ['queue'],
    registers,
    collect: () => refresh('rabbitmq'),
  });

  // Pools and connections are read from memory: no I/O, no timeout needed.
  const pgPools = new Map<string, PoolCounts>();
  const redisConnections = new Map<string, Pick<Redis, 'status'>>();
  const pgGauge = (name: string, help: string, pick: (p: PoolCounts) => number) =>
    new Gauge({
      name,
      help,
      labelNames: ['pool'],
      registers,
      collect() {
        for (const [pool, p] of pgPools) this.set({ pool }, pick(p));
      },
    });
  pgGauge('conveyor_pg_pool_clients', 'PostgreSQL pool clients, idle or in use', (p) => p.totalCount);
  pgGauge('conveyor_pg_pool_idle_clients', 'PostgreSQL pool clients idle', (p) => p.idleCount);
  pgGauge(
    'conveyor_pg_pool_waiting_requests',
    'Queries waiting for a PostgreSQL pool client',
    (p) => p.waitingCount,
  );
  new Gauge({
    name: 'conveyor_redis_connection_up',
    help: 'Whether a Redis connection is ready (1) or not (0)',
    labelNames: ['connection'],
    registers,
    collect() {
      for (const [connection, r] of redisConnections) this.set({ connection }, r.status === 'ready' ? 1 : 0);
    },
  });

  let replicaCounters: ReplicaReadCounters | undefined;

  return {
    watchQueues({ tenantsTop = 10, ...opts }) {
      if (queueReader) return queueReader;
      const reader = createQueueStatsReader(opts);
      queueReader = reader;
      const copies = dlqSeries('bullmq');
      const meter = createTenantThroughputMeter();
      const clearAll = () => {
        [queueJobs, oldestWaiting, queuePaused, ...tenantGauges].forEach((g) => g.reset());
        fairStarted.reset();
        copies.clear();
      };
      addSource(
        'queues',
        async () => {
          const read = await Promise.all((await reader.list()).map((q) => reader.readTenants(q, tenantsTop)));
          const all = read.map((r) => r.stats);
          return () => {
            // Reset first: a retired event group's queue must not keep its last values.
            [queueJobs, oldestWaiting, queuePaused].forEach((g) => g.reset());
            copies.replace(
              all
                .filter((s) => isDeadLetterQueue(s.queue, opts.modules))
                .map((s) => ({
                  queue: s.queue,
                  messages:
                    s.waiting +
                    s.prioritized +
                    s.held +
                    s.delayed +
                    s.active +
                    s.failed +
                    s.completed +
                    s.waitingChildren,
                })),
            );
            for (const { stats: s, tenants } of read) {
              const states = {
                waiting: s.waiting,
                prioritized: s.prioritized,
                // Only where a fair queue can hold commands (the command queues).
                ...(tenants ? { held: s.held } : {}),
                delayed: s.delayed,
                active: s.active,
                failed: s.failed,
                completed: s.completed,
                'waiting-children': s.waitingChildren,
              };
              for (const [state, value] of Object.entries(states))
                queueJobs.set({ queue: s.queue, state }, value);
              oldestWaiting.set({ queue: s.queue }, s.oldestWaitingAgeSeconds);
              queuePaused.set({ queue: s.queue }, s.paused ? 1 : 0);
            }
            // Measured here, in the commit: a read that timed out never moves the meter's baseline.
            const rates = new Map<string, TenantThroughput | null>();
            for (const r of read)
              if (r.tenants) rates.set(r.stats.queue, meter.observe(r.stats.queue, r.tenants, r.at));
            setTenants(read, rates);
          };
        },
        clearAll,
        () => reader.close(),
      );
      return reader;
    },
    watchOutbox(read) {
      if (sources.has('outbox')) return;
      // Created here, not up front: an unlabelled gauge always shows a value (0), and a process
      // without the relay must not claim an empty outbox.
      const count = new Gauge({
        name: 'conveyor_outbox_unpublished_events',
        help: 'Outbox rows not yet published to the event bus',
        registers,
        collect: () => refresh('outbox'),
      });
      const age = new Gauge({
        name: 'conveyor_outbox_oldest_unpublished_age_seconds',
        help: 'Age of the oldest unpublished outbox row, 0 when none',
        registers,
        collect: () => refresh('outbox'),
      });
      addSource(
        'outbox',
        async () => {
          const b = await read();
          return () => {
            count.set(b.count);
            age.set(b.oldestAgeSeconds);
          };
        },
        () => [count, age].forEach((g) => g.remove({})),
      );
    },
    watchPgReplica(readLag) {
      if (replicaCounters) return replicaCounters;
      // Created here, like the outbox's: a process without a replica must not claim a lag of 0.
      const seconds = new Gauge({
        name: 'conveyor_pg_replica_lag_seconds',
        help: 'How far the read replica is behind the primary: 0 when it has replayed all the WAL the primary had written, else the age of the last transaction it replayed',
        registers,
        collect: () => refresh('pg_replica'),
      });
      const bytes = new Gauge({
        name: 'conveyor_pg_replica_lag_bytes',
        help: 'WAL bytes the primary has written that the read replica has not replayed yet',
        registers,
        collect: () => refresh('pg_replica'),
      });
      const reads = new Counter({
        name: 'conveyor_pg_replica_reads_total',
        help: 'Query-side reads sent to the read replica',
        registers,
      });
      const fallbacks = new Counter({
        name: 'conveyor_pg_replica_fallbacks_total',
        help: 'Query-side reads the primary answered instead of the replica: ids it had not replayed yet (miss) or a replica failure (error)',
        labelNames: ['reason'],
        registers,
      });
      for (const reason of ['miss', 'error']) fallbacks.inc({ reason }, 0);
      addSource(
        'pg_replica',
        async () => {
          const lag = await readLag();
          return () => {
            seconds.set(lag.seconds);
            bytes.set(lag.bytes);
          };
        },
        () => [seconds, bytes].forEach((g) => g.remove({})),
      );
      replicaCounters = {
        read: () => reads.inc(),
        fallback: (reason) => fallbacks.inc({ reason }),
      };
      return replicaCounters;
    },
    watchPgPool: (name, pool) => void pgPools.set(name, pool),
    watchRedis: (name, redis) => void redisConnections.set(name, redis),
    watchKafkaLag({ deadLetterTopics, ...opts }) {
      if (sources.has('kafka')) return;
      const reader: BusReader<PartitionLag> = createKafkaLagReader(opts);
      const dlqTopics = deadLetterTopics ?? opts.topics.flatMap((t) => kafkaDlqOf(t) ?? []);
      if (dlqTopics.length > 0) {
        const sizes: BusReader<TopicSize> = createKafkaTopicSizeReader({ ...opts, topics: dlqTopics });
        const series = dlqSeries('kafka');
        addSource(
          'kafka_dlq',
          async () => {
            const read = await sizes.read();
            return () => series.replace(read.map((t) => ({ queue: t.topic, messages: t.messages })));
          },
          () => series.clear(),
          () => sizes.close(),
        );
      }
      addSource(
        'kafka',
        async () => {
          const lags = await reader.read();
          return () => {
            kafkaLag.reset();
            for (const l of lags)
              kafkaLag.set({ group: l.group, topic: l.topic, partition: String(l.partition) }, l.lag);
          };
        },
        () => kafkaLag.reset(),
        () => reader.close(),
      );
    },
    watchRabbitmq({ deadLetterQueues, ...opts }) {
      if (sources.has('rabbitmq')) return;
      const reader: BusReader<RabbitQueueDepth> = createRabbitmqDepthReader(opts);
      const isDlq = (q: string) => (deadLetterQueues ? deadLetterQueues.includes(q) : isRabbitmqDlq(q));
      const series = dlqSeries('rabbitmq');
      addSource(
        'rabbitmq',
        async () => {
          const depths = await reader.read();
          return () => {
            rabbitMessages.reset();
            rabbitConsumers.reset();
            series.replace(depths.filter((d) => isDlq(d.queue)));
            for (const d of depths) {
              rabbitMessages.set({ queue: d.queue }, d.messages);
              rabbitConsumers.set({ queue: d.queue }, d.consumers);
            }
          };
        },
        () => {
          [rabbitMessages, rabbitConsumers].forEach((g) => g.reset());
          series.clear();
        },
        () => reader.close(),
      );
    },
    watchSqs({ deadLetterQueues, ...opts }) {
      if (sources.has('sqs')) return;
      const reader: BusReader<SqsQueueDepth> = createSqsDepthReader(opts);
      const isDlq = (q: string) => (deadLetterQueues ? deadLetterQueues.includes(q) : isSqsDlq(q));
      const series = dlqSeries('sqs');
      addSource(
        'sqs',
        async () => {
          const depths = await reader.read();
          return () => {
            sqsMessages.reset();
            series.replace(
              depths
                .filter((d) => isDlq(d.queue))
                .map((d) => ({ queue: d.queue, messages: d.visible + d.inFlight + d.delayed })),
            );
            for (const d of depths) {
              sqsMessages.set({ queue: d.queue, state: 'visible' }, d.visible);
              sqsMessages.set({ queue: d.queue, state: 'in_flight' }, d.inFlight);
              sqsMessages.set({ queue: d.queue, state: 'delayed' }, d.delayed);
            }
          };
        },
        () => {
          sqsMessages.reset();
          series.clear();
        },
        () => reader.close(),
      );
    },
    close: async () => {
      for (const s of [...sources.values()].toReversed()) await s.close().catch(() => undefined);
      sources.clear();
      pgPools.clear();
      redisConnections.clear();
    },
  };
}
