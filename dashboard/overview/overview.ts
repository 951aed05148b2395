import type { Config } from '../../shared/config/config.ts';
import type { Pool } from '../../shared/db/pool.ts';
import {
  createKafkaLagReader,
  createRabbitmqDepthReader,
  createSqsDepthReader,
  type BusReader,
  type PartitionLag,
  type RabbitQueueDepth,
  type SqsQueueDepth,
} from '../../shared/observability/bus-lag.ts';
import { sqsGroupQueues } from '../../shared/bus/sqs/bus.ts';
import type { OutboxBacklog } from '../../shared/observability/collectors.ts';
import {
  createKafkaTopicSizeReader,
  kafkaDlqOf,
  type NativeDlqTransport,
  type TopicSize,
} from '../../shared/observability/native-dlq.ts';
import {
  createQueueStatsReader,
  type QueueStats,
  type QueueTenants,
} from '../../shared/observability/queue-stats.ts';
import { MODULES } from '../../modules/registry.ts';
import { commandQueues, isDeadLetterQueue, QueueNames, type QueueName } from '../../shared/queue/names.ts';
import type { Redis } from '../../shared/queue/redis.ts';
import { withDeadline } from '../../shared/runtime/deadline.ts';
import { readBreakers, type BreakerStatus } from './breakers.ts';
import {
  activity,
  outboxBacklog,
  pendingDeadLetters,
  recordedDeadLetters,
  type Activity,
  type PendingDeadLetters,
} from './overview.sql.ts';
import { COMMAND_SCALERS, desiredReplicas, PROJECTIONS_SCALERS, type ScalerTarget } from './scalers.ts';

/** A source's answer, or why there is none (like `conveyor_metrics_collector_up` = 0 on /metrics). */
export type Sourced<T> = { ok: true; value: T } | { ok: false; error: string };

/** A command module as the Overview shows it: its queues and the events its decisions append. */
export interface CommandModule {
  name: string;
  queue: string;
  deadLetterQueue: string;
  eventTypes: readonly string[];
}

/** Every module of the registry (modules/registry.ts), in its order. */
export function commandModules(): CommandModule[] {
  return MODULES.map((m) => ({
    name: m.name,
    queue: commandQueues(m.name).commands,
    deadLetterQueue: commandQueues(m.name).deadLetters,
    eventTypes: Object.keys(m.events),
  }));
}

export interface QueueOverview extends QueueStats {
  /** A module's commands, the BullMQ bus's events (`events`, `events.<group>`), or dead-letter copies nothing consumes. */
  role: 'command' | 'events' | 'dead-letter';
  /** For a dead-letter queue: the queue its dead letters come from. */
  origin: string | null;
  /** A command queue's tenants waiting their turn (fairness; details on the Tenants page); else null. */
  tenants: TenantsSummary | null;
}

/** How many tenants have commands waiting their turn, and the one with the most. */
export interface TenantsSummary {
  waiting: number;
  largest: { tenant: string; waiting: number } | null;
}

/** What KEDA reads and would ask for now. */
export interface Scaling {
  scaler: ScalerTarget;
  metric: number;
  desired: number;
}

export interface BusOverview {
  kind: Config['bus']['kind'];
  /** Kafka: lag of the projections group per topic; RabbitMQ: ready messages per queue. Null for BullMQ (its `events` queue is in the queue table). */
  depth: Sourced<{ label: string; value: number }[]> | null;
  /** The projections ScaledObject of this bus's overlay; null where `deploy/` ships none. */
  scaling: Sourced<Scaling> | null;
}

/**
 * A transport's own dead-letter place and what the `dead_letters` table accounts for there. The core
 * records the row before it copies a message there, but a broker also dead-letters by itself (a
 * RabbitMQ delivery limit, an SQS `maxReceiveCount`) — without a row, out of every console's sight.
 */
export interface NativeDeadLetters {
  transport: NativeDlqTransport;
  /** BullMQ `<queue>-dead-letters`, RabbitMQ `<queue>.dlq`, the SQS DLQ, Kafka `<topic>.dlq`. */
  queue: string;
  /** Where its messages came from: the `origin` of their dead-letter rows. */
  origins: readonly string[];
  /** Messages it holds (SQS: approximate; Kafka: retained). */
  messages: number;
  /**
   * Dead-letter rows that account for them: BullMQ removes a copy when its dead letter is redriven or
   * discarded, so its pending rows; the brokers keep their copies, so every row of the origins. Null
   * when the table could not be read.
   */
  recorded: number | null;
  /** What `recorded` counts, for people (`pending dead letters`, `dead letters from <origin>`). */
  recordedWhat: string;
}

export type Level = 'healthy' | 'attention' | 'unhealthy';
export interface Finding {
  level: Exclude<Level, 'healthy'>;
  text: string;
}

export interface Overview {
  at: Date;
  modules: CommandModule[];
  queues: Sourced<QueueOverview[]>;
  /** Per command queue with a ScaledObject in `deploy/`. */
  commandScaling: Record<string, Sourced<Scaling>>;
  bus: BusOverview;
  outbox: Sourced<OutboxBacklog>;
  deadLetters: Sourced<PendingDeadLetters[]>;
  /**
   * The transports' own dead-letter places that hold messages, with what the table accounts for
   * (empty ones are left out); unavailable when neither Redis nor the bus answered.
   */
  nativeDeadLetters: Sourced<NativeDeadLetters[]>;
  activity: Sourced<Activity>;
  breakers: Sourced<BreakerStatus[]>;
  /** Why the platform is not healthy, worst first; empty when it is. */
  findings: Finding[];
  level: Level;
}

/** Reads the Overview; keeps its broker connections between reads. */
export interface OverviewSource {
  read(): Promise<Overview>;
  /** Releases the queue handles and broker clients (the shared Redis and pool stay open). Idempotent. */
  close(): Promise<void>;
}

export interface OverviewDeps {
  config: Config;
  pool: Pool;
  /** Shared connection (queue depths, breaker reports). */
  redis: Redis;
  /** Bound on each source, as `/metrics` bounds each collector. @defaultValue 2000 */
  timeoutMs?: number;
}

/** When the Overview stops calling the platform healthy. */
export const THRESHOLDS = {
  /** Oldest runnable job on a work queue (s): attention, unhealthy. */
  oldestWaitingSeconds: [60, 300],
  /**
   * Oldest unpublished outbox row (s): attention, unhealthy. The relay publishes within a poll
   * interval (1 s) of a commit; 5 minutes means it is stopped or an event blocks it
   * (`ConveyorOutboxStuck` in deploy/monitoring alerts at the same age).
   */
  outboxAgeSeconds: [30, 300],
  /** Share of the hour's decisions or published events that were dead-lettered: attention, unhealthy. */
  failureRate: [0.01, 0.1],
  /** …judged only above this many in the hour (one dead letter among three orders is no trend). */
  failureRateMinVolume: 20,
} as const;

const sum = (xs: readonly number[]) => xs.reduce((a, b) => a + b, 0);

/** How a decision event ended its command: `<aggregate>.rejected`, `.dead_lettered`, anything else done. */
export function outcomeOf(eventType: string): 'completed' | 'rejected' | 'dead_lettered' | 'cancelled' {
  if (eventType.endsWith('.dead_lettered')) return 'dead_lettered';
  if (eventType.endsWith('.cancelled')) return 'cancelled';
  if (eventType.endsWith('.rejected')) return 'rejected';
  return 'completed';
}

/** A module's decisions per minute by outcome, and its totals over the window. */
export function moduleTotals(
  a: Activity,
  m: Pick<CommandModule, 'eventTypes'>,
): { decided: number; deadLettered: number; byOutcome: Record<ReturnType<typeof outcomeOf>, number[]> } {
  const zeros = () => Array.from({ length: a.published.length }, () => 0);
  const byOutcome = { completed: zeros(), rejected: zeros(), dead_lettered: zeros(), cancelled: zeros() };
  for (const type of m.eventTypes) {
    const series = byOutcome[outcomeOf(type)];
    (a.appended[type] ?? []).forEach((n, i) => (series[i] = (series[i] ?? 0) + n));
  }
  const deadLettered = sum(byOutcome.dead_lettered);
  return {
    decided: sum(byOutcome.completed) + sum(byOutcome.rejected) + deadLettered,
    deadLettered,
    byOutcome,
  };
}

const plural = (n: number, what: string) => `${n.toLocaleString('en-US')} ${what}${n === 1 ? '' : 's'}`;

const TRANSPORT_NAMES: Record<NativeDlqTransport, string> = {
  bullmq: 'BullMQ',
  kafka: 'Kafka',
  rabbitmq: 'RabbitMQ',
  sqs: 'SQS',
};

/**
 * What one non-empty native dead-letter place means: messages the table does not account for are
 * unhealthy; a broker's copies of recorded dead letters need attention (purge them once handled);
 * BullMQ's copies of pending dead letters add nothing to that finding of their own.
 */
function nativeFinding(d: NativeDeadLetters): Finding | null {
  const kind = d.transport === 'kafka' ? 'topic' : 'queue';
  const where = `${TRANSPORT_NAMES[d.transport]} dead-letter ${kind} "${d.queue}"`;
  const held = plural(d.messages, 'message');
  if (d.recorded === null)
    return { level: 'attention', text: `${where} holds ${held}; the dead-letter table could not be read` };
  const missing = d.messages - d.recorded;
  if (missing > 0)
    return {
      level: 'unhealthy',
      text: `${where} holds ${held}, only ${d.recorded.toLocaleString('en-US')} ${d.recordedWhat} account for them: ${missing.toLocaleString('en-US')} sit where no operator looks`,
    };
  if (d.transport === 'bullmq') return null;
  return {
    level: 'attention',
    text: `${where} holds ${held}, each recorded as a dead letter; purge it once they are handled`,
  };
}

function findingsOf(o: Omit<Overview, 'findings' | 'level'>): Finding[] {
  const out: Finding[] = [];
  const add = (level: Finding['level'], text: string) => out.push({ level, text });
  const unavailable: [string, Sourced<unknown> | null][] = [
    ['Queue depths (Redis)', o.queues],
    ['Outbox backlog (PostgreSQL)', o.outbox],
    ['Dead letters (PostgreSQL)', o.deadLetters],
    ['Activity (PostgreSQL)', o.activity],
    ['Circuit breakers (Redis)', o.breakers],
    [`${o.bus.kind} depth`, o.bus.depth],
  ];
  for (const [what, s] of unavailable) if (s && !s.ok) add('attention', `${what} unavailable: ${s.error}`);

  if (o.breakers.ok) {
    for (const b of o.breakers.value) {
      if (b.state === 'open') add('unhealthy', `Circuit breaker "${b.breaker}" is open`);
      else if (b.state === 'half-open') add('attention', `Circuit breaker "${b.breaker}" is half-open`);
    }
  }
  if (o.queues.ok) {
    for (const q of o.queues.value) {
      // Nothing retries a job in a failed set, no dead letter shows it, and BullMQ trims it in the end.
      if (q.failed > 0)
        add(
          'unhealthy',
          `Queue "${q.queue}": ${plural(q.failed, 'job')} in BullMQ's failed set — retried by nothing, shown by no dead letter`,
        );
      if (q.role === 'dead-letter') continue;
      if (q.paused) add('attention', `Queue "${q.queue}" is paused`);
      const [warn, bad] = THRESHOLDS.oldestWaitingSeconds;
      if (q.oldestWaitingAgeSeconds >= bad)
        add(
          'unhealthy',
          `Queue "${q.queue}": oldest job has waited ${Math.round(q.oldestWaitingAgeSeconds)} s`,
        );
      else if (q.oldestWaitingAgeSeconds >= warn)
        add(
          'attention',
          `Queue "${q.queue}": oldest job has waited ${Math.round(q.oldestWaitingAgeSeconds)} s`,
        );
    }
  }
  if (o.outbox.ok && o.outbox.value.count > 0) {
    const [warn, bad] = THRESHOLDS.outboxAgeSeconds;
    const { count, oldestAgeSeconds: age } = o.outbox.value;
    const text = `Outbox: ${plural(count, 'event')} unpublished, the oldest for ${Math.round(age)} s`;
    if (age >= bad) add('unhealthy', text);
    else if (age >= warn) add('attention', text);
  }
  if (o.nativeDeadLetters.ok) {
    for (const d of o.nativeDeadLetters.value) {
      const f = nativeFinding(d);
      if (f) add(f.level, f.text);
    }
  }
  if (o.deadLetters.ok) {
    const pending = sum(o.deadLetters.value.map((d) => d.count));
    if (pending > 0)
      add('attention', `${pending} dead letter${pending === 1 ? '' : 's'} pending an operator's decision`);
  }
  if (o.activity.ok) {
    const [warn, bad] = THRESHOLDS.failureRate;
    const a = o.activity.value;
    const rates: [string, number, number][] = o.modules.map((m) => {
      const t = moduleTotals(a, m);
      return [`decisions in ${m.name}`, t.deadLettered, t.decided];
    });
    rates.push(['published events', sum(a.eventDeadLetters), sum(a.published)]);
    for (const [what, failed, total] of rates) {
      if (total < THRESHOLDS.failureRateMinVolume || failed === 0) continue;
      const rate = failed / total;
      const text = `${(rate * 100).toFixed(1)}% of the last hour's ${what} were dead-lettered (${failed} of ${total})`;
      if (rate >= bad) add('unhealthy', text);
      else if (rate >= warn) add('attention', text);
    }
  }
  for (const s of [...Object.values(o.commandScaling), o.bus.scaling]) {
    if (s?.ok && s.value.desired >= s.value.scaler.maxReplicas && s.value.metric > 0)
      add(
        'attention',
        `${s.value.scaler.scaledObject} would run at its maximum (${s.value.scaler.maxReplicas} replicas)`,
      );
  }
  return out.sort((a, b) => (a.level === b.level ? 0 : a.level === 'unhealthy' ? -1 : 1));
}

/** A fair queue's tenants read with `top` 1, for the Overview's queue row. */
function tenantsSummary({ tenants }: QueueTenants): TenantsSummary | null {
  if (!tenants) return null;
  const largest = tenants.tenants[0];
  return {
    waiting: tenants.tenants.length + tenants.others.tenants,
    largest: largest ? { tenant: largest.tenant, waiting: largest.waiting } : null,
  };
}

/** A native dead-letter place the bus reader measured, before the table is asked about it. */
type NativeCount = Omit<NativeDeadLetters, 'recorded' | 'recordedWhat'>;

/** The bus's depth rows for people, and its own dead-letter place(s). */
interface BusRead {
  rows: { label: string; value: number }[];
  dlq: NativeCount[];
}

/**
 * The Overview's data, from the same sources as `/metrics` (shared/observability: queue depths,
 * failed sets and oldest-waiting ages — registered event groups' `events.<group>` queues included —,
 * Kafka lag, RabbitMQ and SQS depth, the native dead-letter places; the outbox backlog query), plus
 * PostgreSQL for the hour's activity, pending dead letters and what accounts for the native DLQs'
 * messages, and Redis for the workers' breaker reports. Each source is read concurrently and bounded
 * by `timeoutMs`; one that fails or is late is reported as unavailable, never as zero.
 * @example const overview = await createOverviewSource({ config, pool, redis }).read();
 */
export function createOverviewSource(deps: OverviewDeps): OverviewSource {
  const { config, pool, redis } = deps;
  const timeoutMs = deps.timeoutMs ?? 2_000;
  const prefix = config.redis.queuePrefix;
  // Every queue of the registry and the bus, and the queue of every event group registered now.
  const queues = createQueueStatsReader({ connection: redis, prefix, modules: MODULES });
  const bus = config.bus;
  const modules = commandModules();
  const roleOf = (queue: QueueName): Pick<QueueOverview, 'role' | 'origin'> => {
    const m = modules.find((x) => x.queue === queue || x.deadLetterQueue === queue);
    if (isDeadLetterQueue(queue, MODULES))
      return { role: 'dead-letter', origin: m ? m.queue : QueueNames.events };
    return { role: m ? 'command' : 'events', origin: null };
  };
  let kafka: BusReader<PartitionLag> | undefined;
  let kafkaDlq: BusReader<TopicSize> | undefined;
  let rabbit: BusReader<RabbitQueueDepth> | undefined;
  let sqs: BusReader<SqsQueueDepth> | undefined;
  // The projections group's queue and its DLQ, named as the SQS bus names them (as /metrics reads them).
  const sqsQueues = sqsGroupQueues(bus.sqs);
  const kafkaDlqTopic = kafkaDlqOf(bus.kafka.topic) ?? `${bus.kafka.topic}.dlq`;
  const rabbitDlq = `${bus.rabbitmq.queue}.dlq`;
  // Broker clients are made on first use: a console that nobody opens never connects to Kafka.
  const kafkaReader = () =>
    (kafka ??= createKafkaLagReader({
      brokers: bus.kafka.brokers,
      clientId: bus.kafka.clientId,
      ssl: bus.kafka.ssl,
      sasl: bus.kafka.sasl,
      topics: [bus.kafka.topic, `${bus.kafka.topic}.retry`],
      groups: [bus.kafka.consumer.groupId],
      requestTimeoutMs: timeoutMs,
    }));
  const kafkaDlqReader = () =>
    (kafkaDlq ??= createKafkaTopicSizeReader({
      brokers: bus.kafka.brokers,
      clientId: bus.kafka.clientId,
      ssl: bus.kafka.ssl,
      sasl: bus.kafka.sasl,
      topics: [kafkaDlqTopic],
      requestTimeoutMs: timeoutMs,
    }));
  const rabbitReader = () =>
    (rabbit ??= createRabbitmqDepthReader({
      url: bus.rabbitmq.url,
      queues: [bus.rabbitmq.queue, rabbitDlq],
      timeoutMs,
    }));

  const sqsReader = () =>
    (sqs ??= createSqsDepthReader({
      endpoint: bus.sqs.endpoint,
      region: bus.sqs.region,
      queues: [sqsQueues.queue, sqsQueues.dlq],
      timeoutMs,
    }));

  const sourced = async <T>(work: () => Promise<T>): Promise<Sourced<T>> => {
    try {
      return { ok: true, value: await withDeadline(work(), timeoutMs) };
    } catch (err) {
      return { ok: false, error: err instanceof Error ? err.message : String(err) };
    }
  };
  const scaling = (scaler: ScalerTarget, metric: number): Scaling => ({
    scaler,
    metric,
    desired: desiredReplicas(metric, scaler),
  });

  async function busRead(): Promise<BusRead> {
    if (bus.kind === 'sqs') {
      const depths = await sqsReader().read();
      const of = (queue: string) => depths.find((d) => d.queue === queue);
      const dlq = of(sqsQueues.dlq);
      return {
        rows: [sqsQueues.queue, sqsQueues.dlq].map((queue) => ({
          label: `visible messages in ${queue}`,
          value: of(queue)?.visible ?? 0,
        })),
        dlq: [
          {
            transport: 'sqs',
            queue: sqsQueues.dlq,
            origins: [sqsQueues.queue],
            messages: dlq ? dlq.visible + dlq.inFlight + dlq.delayed : 0,
          },
        ],
      };
    }
    if (bus.kind === 'kafka') {
      const [lags, sizes] = await Promise.all([kafkaReader().read(), kafkaDlqReader().read()]);
      const byTopic = new Map<string, number>();
      for (const l of lags) byTopic.set(l.topic, (byTopic.get(l.topic) ?? 0) + l.lag);
      const retained = sizes.find((t) => t.topic === kafkaDlqTopic)?.messages ?? 0;
      return {
        rows: [
          ...[bus.kafka.topic, `${bus.kafka.topic}.retry`].map((topic) => ({
            label: `lag of ${bus.kafka.consumer.groupId} on ${topic}`,
            value: byTopic.get(topic) ?? 0,
          })),
          { label: `messages in ${kafkaDlqTopic}`, value: retained },
        ],
        dlq: [{ transport: 'kafka', queue: kafkaDlqTopic, origins: [bus.kafka.topic], messages: retained }],
      };
    }
    const depths = await rabbitReader().read();
    const of = (queue: string) => depths.find((d) => d.queue === queue)?.messages ?? 0;
    return {
      rows: [bus.rabbitmq.queue, rabbitDlq].map((queue) => ({
        label: `ready messages in ${queue}`,
        value: of(queue),
      })),
      dlq: [
        { transport: 'rabbitmq', queue: rabbitDlq, origins: [bus.rabbitmq.queue], messages: of(rabbitDlq) },
      ],
    };
  }

  /** BullMQ's copies: one per pending dead letter of its origin (a redrive or discard removes it). */
  function bullmqCopies(stats: readonly QueueOverview[]): NativeCount[] {
    return stats
      .filter((q) => q.role === 'dead-letter')
      .map((q) => ({
        transport: 'bullmq' as const,
        queue: q.queue,
        origins: [q.origin ?? QueueNames.events],
        messages:
          q.waiting + q.prioritized + q.delayed + q.active + q.failed + q.completed + q.waitingChildren,
      }))
      .filter((c) => c.messages > 0);
  }

  /** What the table accounts for in each non-empty native DLQ. */
  async function accountFor(
    counts: readonly NativeCount[],
    pending: Sourced<PendingDeadLetters[]>,
  ): Promise<NativeDeadLetters[]> {
    return Promise.all(
      counts.map(async (c): Promise<NativeDeadLetters> => {
        if (c.transport === 'bullmq') {
          // `events-dead-letters` holds the copies of every event group's queue (`events.<group>`).
          const isFrom = (origin: string) =>
            c.origins.includes(origin) ||
            (c.origins.includes(QueueNames.events) && origin.startsWith(`${QueueNames.events}.`));
          return {
            ...c,
            recordedWhat: 'pending dead letters',
            recorded: pending.ok
              ? pending.value
                  .filter((d) => d.transport === 'bullmq' && isFrom(d.origin))
                  .reduce((n, d) => n + d.count, 0)
              : null,
          };
        }
        // The brokers keep their copies after a redrive or discard: every row of the origin counts.
        const recorded = await sourced(() => recordedDeadLetters(pool, c.transport, c.origins));
        return {
          ...c,
          recordedWhat: `dead letters from ${c.origins.join(', ')}`,
          recorded: recorded.ok ? recorded.value : null,
        };
      }),
    );
  }

  let closing: Promise<void> | undefined;
  return {
    async read() {
      const [queueStats, outbox, deadLetters, recent, breakers, busState] = await Promise.all([
        // The largest tenant of each command queue comes with its counts (one read, not two).
        sourced(async () => Promise.all((await queues.list()).map((q) => queues.readTenants(q, 1)))),
        sourced(() => outboxBacklog(pool)),
        sourced(() => pendingDeadLetters(pool)),
        sourced(() => activity(pool)),
        sourced(() => readBreakers(redis, prefix)),
        bus.kind === 'bullmq' ? Promise.resolve(null) : sourced(busRead),
      ]);
      const depth: Sourced<{ label: string; value: number }[]> | null =
        busState === null ? null : busState.ok ? { ok: true, value: busState.value.rows } : busState;
      const queueRows: Sourced<QueueOverview[]> = queueStats.ok
        ? {
            ok: true,
            value: queueStats.value.map((r) => ({
              ...r.stats,
              ...roleOf(r.stats.queue),
              tenants: tenantsSummary(r),
            })),
          }
        : queueStats;
      const counted: NativeCount[] = [
        ...(queueRows.ok ? bullmqCopies(queueRows.value) : []),
        ...(busState?.ok ? busState.value.dlq.filter((d) => d.messages > 0) : []),
      ];
      const nativeDeadLetters: Sourced<NativeDeadLetters[]> =
        !queueRows.ok && !busState?.ok
          ? { ok: false, error: queueRows.error }
          : { ok: true, value: await accountFor(counted, deadLetters) };
      const backlogOf = (name: QueueName): Sourced<number> =>
        queueStats.ok
          ? { ok: true, value: queueStats.value.find((r) => r.stats.queue === name)?.stats.backlog ?? 0 }
          : queueStats;
      const commandScaling: Record<string, Sourced<Scaling>> = {};
      for (const m of modules) {
        const scaler = COMMAND_SCALERS[m.queue];
        if (!scaler) continue;
        const backlog = backlogOf(m.queue);
        commandScaling[m.queue] = backlog.ok ? { ok: true, value: scaling(scaler, backlog.value) } : backlog;
      }
      const busMetric: Sourced<number> =
        bus.kind === 'bullmq'
          ? backlogOf(QueueNames.events)
          : depth && depth.ok
            ? { ok: true, value: depth.value[0]?.value ?? 0 }
            : (depth ?? { ok: false, error: 'no reader' });
      const projections = PROJECTIONS_SCALERS[bus.kind];
      const partial: Omit<Overview, 'findings' | 'level'> = {
        at: new Date(),
        modules,
        queues: queueRows,
        commandScaling,
        bus: {
          kind: bus.kind,
          depth,
          scaling: !projections
            ? null
            : busMetric.ok
              ? { ok: true, value: scaling(projections, busMetric.value) }
              : busMetric,
        },
        outbox,
        deadLetters,
        nativeDeadLetters,
        activity: recent,
        breakers,
      };
      const findings = findingsOf(partial);
      const level: Level = findings.some((f) => f.level === 'unhealthy')
        ? 'unhealthy'
        : findings.length > 0
          ? 'attention'
          : 'healthy';
      return { ...partial, findings, level };
    },
    close: () =>
      (closing ??= (async () => {
        await Promise.allSettled([
          queues.close(),
          kafka?.close(),
          kafkaDlq?.close(),
          rabbit?.close(),
          sqs?.close(),
        ]);
      })()),
  };
}
