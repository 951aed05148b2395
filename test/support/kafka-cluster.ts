import { join } from 'node:path';
import {
  kafkaLogs,
  kafkaNodeProcess,
  kafkaPorts,
  kafkaTempDir,
  prepareKafkaNode,
  releaseKafkaDir,
  waitKafkaReady,
  type KafkaNodeProcess,
} from './kafka-server.ts';

/** One node (broker + controller) of an {@link OwnKafkaCluster}. */
export interface OwnKafkaNode {
  nodeId: number;
  /** `127.0.0.1:<port>` of this node alone. */
  broker: string;
  port: number;
  controllerPort: number;
  dir: string;
  readonly pid: number | undefined;
  /** Starts it again on its data (no-op while it runs); resolves once its JVM runs, not once it rejoined. */
  start(): Promise<void>;
  /** SIGTERM = a controlled shutdown, SIGKILL = `kill -9`; waits for the exit. */
  stop(signal?: 'SIGTERM' | 'SIGKILL'): Promise<void>;
}

export interface OwnKafkaCluster {
  /** Every node's `127.0.0.1:<port>`, comma-separated: the value for `KAFKA_BROKERS`. */
  brokers: string;
  nodes: readonly OwnKafkaNode[];
  /** Kills every node and removes the dirs. Idempotent. */
  destroy(): Promise<void>;
}

export interface OwnKafkaClusterOptions {
  /** @defaultValue 3 */
  nodes?: number;
  /** Max heap of each node (java -Xmx). @defaultValue '384m' */
  heap?: string;
  /** @defaultValue 120000 */
  readyTimeoutMs?: number;
}

/**
 * A private KRaft cluster for tests that lose a broker: `nodes` combined broker+controller nodes on
 * spare ports, each with its own temp dir, formatted with one cluster id (scripts/kafka/broker.sh, the
 * same config `KAFKA_NODES=3 npm run brokers` writes). Internal topics are replicated on three nodes
 * with min.insync.replicas 2. Resolves once every node is registered and the group coordinator
 * answers. On this 2-core machine three nodes (-Xmx384m each) are ready in ~15-25 s.
 */
export async function ownKafkaCluster(options: OwnKafkaClusterOptions = {}): Promise<OwnKafkaCluster> {
  const { nodes: count = 3, heap = '384m', readyTimeoutMs = 120_000 } = options;
  const root = kafkaTempDir('kafka-cluster');
  const specs: { nodeId: number; port: number; controllerPort: number; dir: string }[] = [];
  for (let nodeId = 1; nodeId <= count; nodeId++) {
    const [port, controllerPort] = await kafkaPorts(specs.flatMap((s) => [s.port, s.controllerPort]));
    specs.push({ nodeId, port, controllerPort, dir: join(root, `node-${nodeId}`) });
  }
  const voters = specs.map((s) => `${s.nodeId}@127.0.0.1:${s.controllerPort}`).join(',');
  const brokers = specs.map((s) => `127.0.0.1:${s.port}`).join(',');
  const nodes: (OwnKafkaNode & { proc: KafkaNodeProcess })[] = specs.map((s) => {
    const proc = kafkaNodeProcess(s.dir, heap, 30_000);
    return {
      ...s,
      broker: `127.0.0.1:${s.port}`,
      proc,
      get pid() {
        return proc.pid;
      },
      start: async () => void (await proc.spawn()),
      stop: (signal) => proc.stop(signal),
    };
  });
  let destroyed: Promise<void> | undefined;
  const cluster: OwnKafkaCluster = {
    brokers,
    nodes,
    destroy: () =>
      (destroyed ??= (async () => {
        await Promise.all(nodes.map((n) => n.proc.stop('SIGKILL')));
        releaseKafkaDir(root);
      })()),
  };
  try {
    // Formatting is a JVM each: one after the other, so the three do not fight for the two cores.
    for (const s of specs)
      await prepareKafkaNode(s.dir, s.port, s.controllerPort, { nodeId: s.nodeId, voters });
    const pids = await Promise.all(nodes.map((n) => n.proc.spawn()));
    await waitKafkaReady({ brokers, pids, nodes: count, timeoutMs: readyTimeoutMs });
  } catch (err) {
    const logs = nodes.map((n) => kafkaLogs(n.dir)).join('');
    await cluster.destroy();
    const { stderr } = err as { stderr?: string };
    throw new Error(
      `own kafka cluster on ${brokers} did not start: ${stderr?.trim() || (err as Error).message}\n${logs}`,
      { cause: err },
    );
  }
  return cluster;
}
