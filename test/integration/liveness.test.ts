import net from 'node:net';
import { Kafka, logLevel } from 'kafkajs';
import type { Redis } from 'ioredis';
import { afterEach, describe, expect, it } from 'vitest';
import { healthRoutes } from '../../api/routes/health.ts';
import type { EventBus } from '../../shared/bus/event-bus.ts';
import { createKafkaBus } from '../../shared/bus/kafka/bus.ts';
import { kafkaTopics } from '../../shared/bus/kafka/headers.ts';
import { createRabbitmqBus, rabbitmqTopology } from '../../shared/bus/rabbitmq/bus.ts';
import { deleteRabbitmqTopology } from '../../shared/bus/rabbitmq/admin.ts';
import type { Config } from '../../shared/config/config.ts';
import type { Pool } from '../../shared/db/pool.ts';
import { createPgDeadLetterSink } from '../../shared/dead-letters/dead-letter.ts';
import { createMetrics } from '../../shared/observability/metrics.ts';
import { createWorkerRedis } from '../../shared/queue/redis.ts';
import { createLifecycle } from '../../shared/runtime/lifecycle.ts';
import { startMetricsServer } from '../../workers/metrics-server.ts';
import { createOrderWorker } from '../support/order-worker.ts';
import { createRelay } from '../../workers/outbox/relay.ts';
import { eventually, migratedPool, testConfig, testLogger } from '../support/env.ts';
import { cleanup } from '../support/platform.ts';

// Point 1 of issue #12: a component that can no longer consume tells its `onFatal` (the process's
// lifecycle in production), and `/healthz` then answers 503 naming it. Each failure is injected for
// real against the real services; the process-level exit is in test/e2e/liveness-process.test.ts.

const cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const fn of cleanups.splice(0).reverse()) await fn().catch(() => undefined);
});

/** An `onFatal` that records what it hears. */
function fatalRecorder() {
  const calls: { component: string; err: Error }[] = [];
  return { calls, onFatal: (component: string, err: Error) => void calls.push({ component, err }) };
}

async function setup(overrides: Record<string, string> = {}): Promise<{ config: Config; pool: Pool }> {
  const config = testConfig(overrides);
  const pool = await migratedPool(config);
  cleanups.push(
    () => cleanup(config),
    () => pool.end(),
  );
  return { config, pool };
}

describe('/healthz', () => {
  it('answers 503 naming the failed component on the API and on the worker metrics server', async () => {
    const { pool } = await setup();
    const lifecycle = createLifecycle(testLogger()); // not owning the process: records, never exits
    const redis = createWorkerRedis({ url: testConfig().redis.url, commandTimeoutMs: 0 });
    cleanups.push(async () => redis.disconnect());
    const api = healthRoutes({ pool, redis: [redis], timeoutMs: 2_000, failure: lifecycle.failure });
    const metrics = createMetrics();
    const server = await startMetricsServer({
      metrics,
      pool,
      redis,
      logger: testLogger(),
      port: 0,
      host: '127.0.0.1',
      probeTimeoutMs: 2_000,
      failure: lifecycle.failure,
    });
    cleanups.push(
      () => metrics.close(),
      () => server.close(),
    );
    const workerHealth = () => fetch(`http://127.0.0.1:${server.port}/healthz`);

    expect((await api.request('/healthz')).status).toBe(200);
    expect((await workerHealth()).status).toBe(200);

    lifecycle.fail('kafka consumer conveyor-projections', new Error('topic deleted'));

    for (const res of [await api.request('/healthz'), await workerHealth()]) {
      expect(res.status).toBe(503);
      expect(await res.json()).toMatchObject({
        status: 'failed',
        component: 'kafka consumer conveyor-projections',
        reason: 'topic deleted',
      });
    }
  });
});

describe('order worker', () => {
  async function orderWorker(config: Config, pool: Pool) {
    const fatal = fatalRecorder();
    const worker = createOrderWorker(
      { pool, logger: testLogger(), onFatal: fatal.onFatal },
      {
        redisUrl: config.redis.url,
        queuePrefix: config.redis.queuePrefix,
        ...config.workers.orders,
        shutdownGraceMs: 2_000,
      },
    );
    cleanups.push(() => worker.close());
    await worker.worker.waitUntilReady();
    return { worker, fatal };
  }

  it('is fatal when its BullMQ loop ends without close() (run() settled underneath it)', async () => {
    const { config, pool } = await setup();
    const { worker, fatal } = await orderWorker(config, pool);
    await worker.worker.close(); // BullMQ's run() returns: nothing takes order jobs any more
    await eventually(() => fatal.calls.length > 0, { what: 'onFatal' });
    expect(fatal.calls[0]?.component).toBe('orders-worker');
    expect(fatal.calls[0]?.err.message).toMatch(/stopped on its own/);
  });

  it('is fatal when its Redis connection is closed for good (BullMQ would wait forever)', async () => {
    const { config, pool } = await setup();
    const { worker, fatal } = await orderWorker(config, pool);
    (worker.worker.opts.connection as Redis).disconnect();
    await eventually(() => fatal.calls.length > 0, { what: 'onFatal' });
    expect(fatal.calls[0]).toMatchObject({ component: 'orders-worker' });
    expect(fatal.calls[0]?.err.message).toMatch(/Redis connection was closed/);
  });

  it('says nothing on a normal close()', async () => {
    const { config, pool } = await setup();
    const { worker, fatal } = await orderWorker(config, pool);
    await worker.close();
    expect(fatal.calls).toEqual([]);
  });
});

describe('outbox relay', () => {
  it('is fatal when its LISTEN loop dies of an error it does not retry', async () => {
    const { config, pool } = await setup();
    const fatal = fatalRecorder();
    const bus = { publish: async () => undefined } as unknown as EventBus;
    // pg's Client constructor reads the CA file named in the URL: missing, it throws out of the loop.
    const url = new URL(config.database.url);
    url.searchParams.set('sslrootcert', '/nonexistent/conveyor-ca.pem');
    const relay = createRelay(
      { pool, bus, logger: testLogger(), onFatal: fatal.onFatal },
      {
        databaseUrl: url.toString(),
        schema: config.database.schema,
        batchSize: 100,
        pollIntervalMs: 60_000,
      },
    );
    cleanups.push(() => relay.close());
    await eventually(() => fatal.calls.length > 0, { what: 'onFatal' });
    expect(fatal.calls[0]?.component).toBe('outbox-relay (listen)');
    expect(fatal.calls[0]?.err.message).toMatch(/ENOENT/);
  });
});

describe('RabbitMQ consumer', () => {
  /** A TCP proxy in front of the broker that can cut every connection and refuse new ones. */
  async function refusingProxy() {
    const sockets = new Set<net.Socket>();
    let refuse = false;
    const server = net.createServer((client) => {
      if (refuse) return void client.destroy();
      const upstream = net.connect({ host: '127.0.0.1', port: 5672 });
      for (const [from, to] of [
        [client, upstream],
        [upstream, client],
      ] as const) {
        sockets.add(from);
        from.pipe(to);
        from.on('error', () => undefined);
        from.on('close', () => {
          sockets.delete(from);
          to.destroy();
        });
      }
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const { port } = server.address() as net.AddressInfo;
    cleanups.push(async () => {
      sockets.forEach((s) => s.destroy());
      await new Promise((r) => server.close(r));
    });
    return {
      url: `amqp://guest:guest@127.0.0.1:${port}`,
      cutAndRefuse: () => {
        refuse = true;
        sockets.forEach((s) => s.destroy());
      },
    };
  }

  it('keeps reconnecting through an outage, and is fatal once it lasts past the recovery budget', async () => {
    const { config, pool } = await setup();
    const proxy = await refusingProxy();
    const fatal = fatalRecorder();
    const busConfig = {
      ...config.bus.rabbitmq,
      url: proxy.url,
      maxAttempts: 3,
      backoffMs: 50,
      reconnectMinMs: 20,
      reconnectMaxMs: 100,
      recoveryBudgetMs: 1_500,
      shutdownGraceMs: 1_000,
    };
    const bus = createRabbitmqBus(
      { logger: testLogger(), deadLetters: createPgDeadLetterSink(pool), onFatal: fatal.onFatal },
      busConfig,
    );
    cleanups.push(
      () => deleteRabbitmqTopology(config.bus.rabbitmq.url, rabbitmqTopology(busConfig), ['projections']),
      () => bus.close(),
    );
    await bus.start();
    await bus.subscribe('projections', async () => undefined);

    const lostAt = Date.now();
    proxy.cutAndRefuse();
    await eventually(() => fatal.calls.length > 0, { what: 'onFatal', timeoutMs: 15_000 });
    expect(Date.now() - lostAt).toBeGreaterThanOrEqual(1_500); // it did ride out the budget first
    expect(fatal.calls[0]?.component).toBe(`rabbitmq consumer ${config.bus.rabbitmq.queue}`);
    expect(fatal.calls[0]?.err.message).toMatch(/could not reconnect for 1500 ms/);
  });
});

describe('Kafka consumer', () => {
  it('is fatal when kafkajs keeps crashing past the recovery budget (a subscribed topic deleted)', async () => {
    const { config, pool } = await setup({ KAFKA_PARTITIONS: '1' });
    const fatal = fatalRecorder();
    const bus = createKafkaBus(
      { logger: testLogger(), deadLetters: createPgDeadLetterSink(pool), onFatal: fatal.onFatal },
      {
        ...config.bus.kafka,
        maxAttempts: 3,
        backoffMs: 50,
        consumer: { ...config.bus.kafka.consumer, sessionTimeout: 6_000, maxWaitTimeMs: 100 },
        shutdownGraceMs: 1_000,
        recoveryBudgetMs: 1_500,
      },
    );
    cleanups.push(() => bus.close());
    await bus.start();
    await bus.subscribe('projections', async () => undefined);

    // Deleting the retry topic under the consumer: kafkajs crashes with a retriable error and, left
    // alone, restarts into the same crash every 100 ms forever.
    const admin = new Kafka({
      brokers: [...config.bus.kafka.brokers],
      clientId: 'liveness-test',
      logLevel: logLevel.NOTHING,
    }).admin();
    await admin.connect();
    cleanups.push(() => admin.disconnect());
    await admin.deleteTopics({ topics: [kafkaTopics(config.bus.kafka.topic).retry] });

    await eventually(() => fatal.calls.length > 0, { what: 'onFatal', timeoutMs: 45_000 });
    expect(fatal.calls[0]?.component).toBe(`kafka consumer ${config.bus.kafka.consumer.groupId}`);
    expect(fatal.calls[0]?.err.message).toMatch(/kept crashing for 1500 ms/);
  }, 60_000);
});
