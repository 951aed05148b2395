import type { Admin, ConfigResourceTypes, ITopicConfig } from 'kafkajs';
import type { Logger } from '../../observability/logger.ts';
import type { KafkaTopics } from './headers.ts';

/** How the bus creates its topics; `undefined` leaves a setting to the broker's defaults. */
export interface KafkaTopicSettings {
  partitions: number;
  /** Replicas of every partition (`KAFKA_REPLICATION_FACTOR`). */
  replicationFactor?: number | undefined;
  /** `min.insync.replicas` of the topics (`KAFKA_MIN_INSYNC_REPLICAS`): an acks=-1 write needs this many. */
  minInsyncReplicas?: number | undefined;
}

/** What one of the bus's topics really is on the cluster. */
export interface KafkaTopicState {
  topic: string;
  /** The smallest replica count among its partitions. */
  replicationFactor: number;
  /** Its effective `min.insync.replicas` (topic override or broker default). */
  minInsyncReplicas: number | undefined;
}

/**
 * The cluster holds a topic whose replication is weaker than the configuration asks for (it existed
 * before, with other settings): writes would not have the durability the operator configured.
 */
export class KafkaTopologyMismatchError extends Error {
  override readonly name = 'KafkaTopologyMismatchError';
  readonly code = 'kafka.topology_mismatch';
  constructor(
    message: string,
    readonly mismatches: readonly string[],
  ) {
    super(message);
  }
}

const MIN_ISR = 'min.insync.replicas';
/** kafkajs declares ConfigResourceTypes as a type-only enum in ESM: TOPIC is 2. */
const TOPIC_RESOURCE = 2 as ConfigResourceTypes;

/** Rejects settings no cluster can honour (checked before anything connects). */
export function assertTopicSettings(settings: KafkaTopicSettings): void {
  const { replicationFactor: rf, minInsyncReplicas: isr } = settings;
  if (rf !== undefined && isr !== undefined && isr > rf) {
    throw new RangeError(
      `KAFKA_MIN_INSYNC_REPLICAS (${isr}) is larger than KAFKA_REPLICATION_FACTOR (${rf}): every acks=-1 write would fail with NOT_ENOUGH_REPLICAS`,
    );
  }
}

/**
 * Creates the events, retry and dead-letter topics when missing — with the configured partitions,
 * replication factor and `min.insync.replicas` — then reads back what the cluster really has. A topic
 * that already existed keeps its settings (Kafka cannot change a replication factor in place); when
 * they are weaker than configured (fewer replicas, a lower `min.insync.replicas`, or a
 * `min.insync.replicas` its replicas can never meet) this throws {@link KafkaTopologyMismatchError}
 * naming each topic, so the process fails at start instead of running with less durability than
 * asked for. Stronger settings than configured are only logged.
 */
export async function declareKafkaTopics(
  admin: Admin,
  topics: KafkaTopics,
  settings: KafkaTopicSettings,
  log: Logger,
): Promise<KafkaTopicState[]> {
  const names = [topics.events, topics.retry, topics.dlq];
  const spec = (topic: string): ITopicConfig => ({
    topic,
    numPartitions: settings.partitions,
    ...(settings.replicationFactor !== undefined ? { replicationFactor: settings.replicationFactor } : {}),
    ...(settings.minInsyncReplicas !== undefined
      ? { configEntries: [{ name: MIN_ISR, value: String(settings.minInsyncReplicas) }] }
      : {}),
  });
  let created: boolean;
  try {
    // Not kafkajs's waitForLeaders: on KRaft it asks the broker that forwarded the request, which may
    // not know the topics yet (UNKNOWN_TOPIC_OR_PARTITION), and gives up; describeKafkaTopics waits.
    created = await admin.createTopics({ waitForLeaders: false, topics: names.map(spec) });
  } catch (err) {
    // e.g. INVALID_REPLICATION_FACTOR ("Replication factor: 3 larger than available brokers: 1").
    const detail = err instanceof Error ? err.message : String(err);
    const nested = (err as { errors?: { message?: string }[] }).errors?.map((e) => e.message) ?? [];
    const brokers = await admin.describeCluster().then(
      (c) => `the cluster has ${c.brokers.length} broker${c.brokers.length === 1 ? '' : 's'}`,
      () => undefined,
    );
    if (brokers) nested.push(brokers);
    throw new Error(
      `kafka: could not create topics ${names.join(', ')} (partitions ${settings.partitions}, replication factor ${settings.replicationFactor ?? 'broker default'}, min.insync.replicas ${settings.minInsyncReplicas ?? 'broker default'}): ${[detail, ...nested].join('; ')}`,
      { cause: err },
    );
  }
  const state = await describeKafkaTopics(admin, names);
  const weaker: string[] = [];
  const stronger: string[] = [];
  for (const t of state) {
    const wantRf = settings.replicationFactor;
    if (wantRf !== undefined && t.replicationFactor < wantRf) {
      weaker.push(`${t.topic} has replication factor ${t.replicationFactor}, configured ${wantRf}`);
    } else if (wantRf !== undefined && t.replicationFactor > wantRf) {
      stronger.push(`${t.topic} has replication factor ${t.replicationFactor}, configured ${wantRf}`);
    }
    const wantIsr = settings.minInsyncReplicas;
    if (wantIsr !== undefined && t.minInsyncReplicas !== undefined && t.minInsyncReplicas < wantIsr) {
      weaker.push(`${t.topic} has ${MIN_ISR}=${t.minInsyncReplicas}, configured ${wantIsr}`);
    } else if (wantIsr !== undefined && t.minInsyncReplicas !== undefined && t.minInsyncReplicas > wantIsr) {
      stronger.push(`${t.topic} has ${MIN_ISR}=${t.minInsyncReplicas}, configured ${wantIsr}`);
    }
    if (t.minInsyncReplicas !== undefined && t.minInsyncReplicas > t.replicationFactor) {
      weaker.push(
        `${t.topic} has ${MIN_ISR}=${t.minInsyncReplicas} but only ${t.replicationFactor} replicas: every write would fail`,
      );
    }
  }
  if (weaker.length > 0) {
    throw new KafkaTopologyMismatchError(
      `kafka: existing topics are replicated less than configured — ${weaker.join('; ')}. ` +
        `Raise them (kafka-reassign-partitions.sh for the replicas, kafka-configs.sh --alter --add-config ${MIN_ISR}=N), ` +
        `or set KAFKA_REPLICATION_FACTOR / KAFKA_MIN_INSYNC_REPLICAS to what the cluster has, or use a new KAFKA_TOPIC`,
      weaker,
    );
  }
  if (stronger.length > 0) {
    log.warn({ differences: stronger }, 'kafka topics are replicated more than configured; left as they are');
  }
  log.info({ created, topics: state }, 'kafka topology declared');
  return state;
}

/**
 * Replication factor (smallest over the partitions) and effective `min.insync.replicas` per topic,
 * once every partition has a leader. Right after a topic is created, a broker may not know it yet
 * (UNKNOWN_TOPIC_OR_PARTITION) or have no leader for it: retried for up to `withinMs`.
 */
export async function describeKafkaTopics(
  admin: Admin,
  names: readonly string[],
  withinMs = 15_000,
): Promise<KafkaTopicState[]> {
  const deadline = Date.now() + withinMs;
  for (let wait = 100; ; wait = Math.min(wait * 2, 1_000)) {
    try {
      return await readTopicStates(admin, names);
    } catch (err) {
      const retriable = (err as { retriable?: boolean }).retriable === true;
      if (!retriable || Date.now() + wait > deadline) throw err;
      await new Promise((resolve) => setTimeout(resolve, wait));
    }
  }
}

async function readTopicStates(admin: Admin, names: readonly string[]): Promise<KafkaTopicState[]> {
  const metadata = await admin.fetchTopicMetadata({ topics: [...names] });
  const configs = await admin.describeConfigs({
    includeSynonyms: false,
    resources: names.map((name) => ({ type: TOPIC_RESOURCE, name, configNames: [MIN_ISR] })),
  });
  return names.map((topic) => {
    const partitions = metadata.topics.find((t) => t.name === topic)?.partitions ?? [];
    if (partitions.length === 0 || partitions.some((p) => p.leader < 0)) {
      throw Object.assign(new Error(`kafka topic ${topic} has no leader for every partition yet`), {
        retriable: true,
      });
    }
    const rf = partitions.length > 0 ? Math.min(...partitions.map((p) => p.replicas.length)) : 0;
    const value = configs.resources
      .find((r) => r.resourceName === topic)
      ?.configEntries.find((e) => e.configName === MIN_ISR)?.configValue;
    const isr = value === undefined ? undefined : Number(value);
    return { topic, replicationFactor: rf, minInsyncReplicas: Number.isInteger(isr) ? isr : undefined };
  });
}
