import { Kafka, logLevel, type Admin } from 'kafkajs';
import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { kafkaTopics } from '../../shared/bus/kafka/headers.ts';
import { describeKafkaTopics } from '../../shared/bus/kafka/topology.ts';
import { eventually } from '../support/env.ts';
import { ownKafkaCluster, type OwnKafkaCluster, type OwnKafkaNode } from '../support/kafka-cluster.ts';
import { logRecords, type Proc } from '../support/processes.ts';
import {
  chaosEnv,
  makeOrders,
  openDb,
  placeBatch,
  startApi,
  startWorkers,
  teardown,
  type Env,
} from './harness.ts';
import { awaitReconciled } from './reconcile.ts';

const BEFORE = 2_000;
const DURING = 300;

/** Partitions of `topic` each node leads (node id → count). */
async function leadersOf(admin: Admin, topic: string): Promise<Map<number, number>> {
  const { topics } = await admin.fetchTopicMetadata({ topics: [topic] });
  const led = new Map<number, number>();
  for (const p of topics[0]?.partitions ?? []) led.set(p.leader, (led.get(p.leader) ?? 0) + 1);
  return led;
}

/** Where the events are: per partition its leader, ISR, high watermark and the group's committed offset. */
async function explainKafka(admin: Admin, env: Env): Promise<string> {
  try {
    const topics = kafkaTopics(env.KAFKA_TOPIC!);
    const groupId = env.KAFKA_GROUP_ID!;
    const lines: string[] = [];
    for (const topic of [topics.events, topics.retry]) {
      const { topics: meta } = await admin.fetchTopicMetadata({ topics: [topic] });
      const marks = await admin.fetchTopicOffsets(topic);
      const [committed] = await admin.fetchOffsets({ groupId, topics: [topic] });
      for (const p of meta[0]?.partitions ?? []) {
        const mark = marks.find((m) => m.partition === p.partitionId);
        const done = committed?.partitions.find((c) => c.partition === p.partitionId)?.offset;
        lines.push(
          `${topic}[${p.partitionId}] leader ${p.leader} isr ${p.isr.join(',')} high ${mark?.high} committed ${done}`,
        );
      }
    }
    const [group] = (await admin.describeGroups([groupId])).groups;
    lines.push(`group ${groupId}: ${group?.state}, ${group?.members.length} members`);
    return lines.join('\n');
  } catch (err) {
    return `(kafka state unavailable: ${(err as Error).message})`;
  }
}

// Scenario: a three-node KRaft cluster, topics at replication factor 3 and min.insync.replicas 2, the
// relay publishing with acks=-1. One broker — the one leading the most event partitions — is killed
// with SIGKILL while a backlog drains. Every write the relay saw confirmed is on at least two
// replicas, so the surviving two have it: leaders move, the relay and the consumers follow them, and
// every order reconciles exactly once. (With replication factor 1 the same kill loses the partitions
// the dead broker held until it comes back — or for good with its disk.)
describe('chaos: a Kafka broker is killed (kill -9) mid-drain at replication factor 3, min.insync.replicas 2', () => {
  let cluster: OwnKafkaCluster | undefined;
  let env: Env | undefined;
  let db: pg.Pool | undefined;
  let admin: Admin | undefined;
  const procs: (Proc | undefined)[] = [];
  beforeAll(async () => {
    cluster = await ownKafkaCluster({ nodes: 3, heap: '384m' });
    env = chaosEnv({
      EVENT_BUS: 'kafka',
      KAFKA_BROKERS: cluster.brokers,
      KAFKA_REPLICATION_FACTOR: '3',
      KAFKA_MIN_INSYNC_REPLICAS: '2',
      KAFKA_PARTITIONS: '3',
      // A short session so the consumer group settles quickly after its coordinator moves.
      KAFKA_SESSION_TIMEOUT_MS: '6000',
    });
    admin = new Kafka({ brokers: cluster.brokers.split(','), logLevel: logLevel.NOTHING }).admin();
    await admin.connect();
  });
  afterAll(async () => {
    await admin?.disconnect();
    if (env) await teardown(env, procs);
    await db?.end();
    await cluster?.destroy();
  });

  it('loses nothing and doubles nothing', async () => {
    const [c, e, a] = [cluster!, env!, admin!];
    const topics = kafkaTopics(e.KAFKA_TOPIC!);
    db = openDb(e);
    const [api, workers] = await Promise.all([
      startApi(e, procs),
      startWorkers(e, 'orders,outbox,projections', {}, procs),
    ]);

    // The bus created its three topics as configured.
    const declared = await describeKafkaTopics(a, [topics.events, topics.retry, topics.dlq]);
    expect(declared).toEqual(
      [topics.events, topics.retry, topics.dlq].map((topic) => ({
        topic,
        replicationFactor: 3,
        minInsyncReplicas: 2,
      })),
    );

    const t0 = Date.now();
    const accepted = await placeBatch(api.url, makeOrders(BEFORE, 'rf3-before'));
    const projected = async () =>
      (await db!.query<{ n: number }>('SELECT count(*)::int AS n FROM order_view')).rows[0]!.n;
    await eventually(async () => (await projected()) >= BEFORE / 10, {
      timeoutMs: 60_000,
      intervalMs: 20,
      what: 'the drain to be under way',
    });

    // The victim: the node leading the most partitions of the events topic.
    const led = await leadersOf(a, topics.events);
    const victimId = [...led.entries()].sort((x, y) => y[1] - x[1])[0]![0];
    const victim: OwnKafkaNode = c.nodes.find((n) => n.nodeId === victimId)!;
    const atKill = await projected();
    const killedAt = Date.now();
    await victim.stop('SIGKILL');
    // Killed in the middle of the drain, not after it.
    expect(atKill).toBeLessThan(BEFORE);

    // Orders keep coming while the cluster runs on two nodes.
    accepted.push(...(await placeBatch(api.url, makeOrders(DURING, 'rf3-during'))));

    // The cluster noticed: the dead node leads nothing, and is out of every in-sync replica set, which
    // still holds the two survivors (min.insync.replicas 2 stays satisfiable).
    await eventually(
      async () => {
        const { topics: meta } = await a.fetchTopicMetadata({ topics: [topics.events] });
        const parts = meta[0]?.partitions ?? [];
        return (
          parts.length === 3 &&
          parts.every((p) => p.leader !== victimId && !p.isr.includes(victimId) && p.isr.length === 2)
        );
      },
      { timeoutMs: 30_000, what: `node ${victimId} to be fenced out of the events topic's ISRs` },
    );

    const report = await awaitReconciled(db, accepted, { explainWith: procs, timeoutMs: 90_000 }).catch(
      async (err: unknown) => {
        throw new Error(`${(err as Error).message}\n${await explainKafka(a, e)}`, { cause: err });
      },
    );
    const drainedAt = Date.now();
    // makeOrders rejects every 10th order (currency XTS): 2,300 accepted = 2,070 completed + 230 rejected.
    expect(report.byStatus).toEqual({
      completed: ((BEFORE + DURING) * 9) / 10,
      rejected: (BEFORE + DURING) / 10,
      dead_lettered: 0,
    });
    expect(report.deadLetters).toBe(0);
    expect([api.child.exitCode, workers.child.exitCode, workers.child.signalCode]).toEqual([
      null,
      null,
      null,
    ]);

    // Redeliveries on the wire are allowed (at least once); the inbox absorbed them (reconciled above).
    const marks = await a.fetchTopicOffsets(topics.events);
    const onTopic = marks.reduce((sum, p) => sum + Number(p.high), 0);
    // Sends kafkajs resolved without every partition's acknowledgement (tulios/kafkajs#1303), caught.
    const unacknowledged = logRecords(workers).filter((l) =>
      JSON.stringify(l.err ?? '').includes('kafka.unacknowledged'),
    ).length;
    console.info(
      `kafka kill -9 at RF 3 / min ISR 2: node ${victimId} (led ${led.get(victimId)} of 3 event partitions) killed ` +
        `${killedAt - t0} ms into the drain with ${atKill}/${BEFORE} projected; ${accepted.length} orders reconciled ` +
        `${drainedAt - killedAt} ms after the kill (${drainedAt - t0} ms in all); ` +
        `${onTopic} records on the events topic for ${accepted.length} events (${onTopic - accepted.length} re-sent), ` +
        `${unacknowledged} sends caught resolving without every partition's acknowledgement; 0 lost, 0 applied twice`,
    );
  });
});
