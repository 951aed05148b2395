import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { eventually } from '../support/env.ts';
import { ownKafka } from '../support/kafka-server.ts';
import type { Proc } from '../support/processes.ts';
import { ownRabbitmq } from '../support/rabbitmq-server.ts';
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

interface Broker {
  /** Environment for the platform processes, pointing them at this broker. */
  env: Env;
  stop(): Promise<void>;
  start(): Promise<void>;
  destroy(): Promise<void>;
}

const brokers: Record<'rabbitmq' | 'kafka', () => Promise<Broker>> = {
  // A private node (own node name, ports, data and cookie; needs the rabbitmq-server package, not a
  // running RabbitMQ): whatever answers on 5672 (the machine's node, a `docker compose up`) is never
  // stopped.
  rabbitmq: async () => {
    const rabbit = await ownRabbitmq();
    return {
      env: { RABBITMQ_URL: rabbit.url },
      stop: () => rabbit.stop(), // a clean shutdown (SIGTERM); a restart keeps durable queues
      start: () => rabbit.start(),
      destroy: () => rabbit.destroy(),
    };
  },
  // A private broker on spare ports: whatever answers on 9092 (the machine's broker, another
  // checkout's, a `docker compose up`) is never stopped.
  kafka: async () => {
    const kafka = await ownKafka();
    return {
      env: { KAFKA_BROKERS: kafka.brokers },
      stop: () => kafka.stop(),
      start: () => kafka.start(),
      destroy: () => kafka.destroy(),
    };
  },
};

// Scenario 5: the event broker restarts while events flow. Orders keep being accepted and decided
// (the write model and outbox do not need the bus); the relay backs off and re-publishes, consumers
// reconnect and resume; at-least-once + the inbox make the end state exact.
const buses = [{ bus: 'rabbitmq' as const }, { bus: 'kafka' as const }];
describe.each(buses)('chaos: the $bus broker restarts while events flow', ({ bus }) => {
  let broker: Broker | undefined;
  let env: Env | undefined;
  let db: pg.Pool | undefined;
  const procs: (Proc | undefined)[] = [];
  beforeAll(async () => {
    broker = await brokers[bus]();
    // A short Kafka session so the consumer group settles quickly after the broker is back.
    env = chaosEnv({
      EVENT_BUS: bus,
      KAFKA_PARTITIONS: '3',
      KAFKA_SESSION_TIMEOUT_MS: '6000',
      ...broker.env,
    });
  });
  afterAll(async () => {
    // The processes and the scenario's topics first (cleanup talks to the broker), then the broker.
    if (env) await teardown(env, procs);
    await db?.end();
    await broker?.destroy();
  });

  it('orders accepted before, during and after the restart all reconcile', async () => {
    const [b, e] = [broker!, env!];
    db = openDb(e);
    const [api, workers] = await Promise.all([
      startApi(e, procs),
      startWorkers(e, 'orders,outbox,projections', {}, procs),
    ]);
    const accepted = await placeBatch(api.url, makeOrders(200, `${bus}-before`));
    const projected = async () =>
      (await db!.query<{ n: number }>('SELECT count(*)::int AS n FROM order_view')).rows[0]!.n;
    await eventually(async () => (await projected()) >= 20, { what: 'events flowing before the restart' });

    let stopped = false;
    try {
      await b.stop();
      stopped = true;
      accepted.push(...(await placeBatch(api.url, makeOrders(100, `${bus}-during`))));
      // The outage is felt: decided orders pile up in the outbox, unpublished.
      await eventually(
        async () =>
          (await db!.query<{ n: number }>('SELECT count(*)::int AS n FROM outbox WHERE published_at IS NULL'))
            .rows[0]!.n > 0,
        { what: 'events waiting in the outbox while the broker is down' },
      );
    } finally {
      // Always bring the broker back (teardown deletes the scenario's topology through it), even when
      // an assertion failed.
      if (stopped) await b.start();
    }
    accepted.push(...(await placeBatch(api.url, makeOrders(100, `${bus}-after`))));

    const report = await awaitReconciled(db, accepted, { explainWith: procs, timeoutMs: 120_000 });
    expect(report.byStatus).toEqual({ completed: 360, rejected: 40, dead_lettered: 0 });
    expect(report.deadLetters).toBe(0);
    expect([api.child.exitCode, workers.child.exitCode, workers.child.signalCode]).toEqual([
      null,
      null,
      null,
    ]);
  });
});
