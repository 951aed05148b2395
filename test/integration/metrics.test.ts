import { OrdersQueues } from '../../modules/orders/queue.ts';
import { spawnSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { connect } from 'amqplib';
import { CreateQueueCommand, DeleteQueueCommand, SendMessageCommand } from '@aws-sdk/client-sqs';
import { Queue, UnrecoverableError, Worker } from 'bullmq';
import { Redis } from 'ioredis';
import { Kafka, logLevel } from 'kafkajs';
import { afterAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../shared/config/config.ts';
import { createKafkaLagReader, createRabbitmqDepthReader } from '../../shared/observability/bus-lag.ts';
import { createMetrics } from '../../shared/observability/metrics.ts';
import { createQueueStatsReader } from '../../shared/observability/queue-stats.ts';
import { bullmqGroupsKey } from '../../shared/bus/bullmq/bus.ts';
import { createSqsClient } from '../../shared/bus/sqs/client.ts';
import { commandQueues, QueueNames } from '../../shared/queue/names.ts';
import { eventually, isolatedEnv, TEST_REDIS_URL, uniqueId } from '../support/env.ts';
import { request, sampleOrder } from '../support/http.ts';
import { cleanup } from '../support/platform.ts';
import { startProcess, startServer, type Proc } from '../support/processes.ts';
import { sample } from '../support/prometheus.ts';
import { MODULES } from '../../modules/registry.ts';

const KAFKA_BROKERS = (process.env.KAFKA_BROKERS ?? '127.0.0.1:9092').split(',');
const RABBITMQ_URL = process.env.TEST_RABBITMQ_URL ?? 'amqp://guest:guest@127.0.0.1:5672';
const SQS_ENDPOINT = process.env.SQS_ENDPOINT ?? 'http://127.0.0.1:9324';

/** `promtool check metrics` on a real exposition: exit code and every lint line it printed. */
function promtool(text: string): { status: number | null; output: string } {
  const which = spawnSync('promtool', ['--version'], { encoding: 'utf8' });
  if (which.error) {
    throw new Error(
      'promtool is not installed: run `bash scripts/install-promtool.sh` (apt package "prometheus")',
    );
  }
  const res = spawnSync('promtool', ['check', 'metrics'], { input: text, encoding: 'utf8' });
  return { status: res.status, output: `${res.stdout}${res.stderr}`.trim() };
}

const redis = new Redis(TEST_REDIS_URL, { maxRetriesPerRequest: null });
const releases: (() => Promise<unknown>)[] = [];
afterAll(async () => {
  for (const release of releases.toReversed()) await release().catch(() => undefined);
  redis.disconnect();
});

describe('queue stats', () => {
  it('reads the oldest waiting job from the tail of the wait list (BullMQ LPUSHes), and prioritized ones too', async () => {
    const prefix = uniqueId('cvm');
    const queue = new Queue('orders', { connection: redis, prefix });
    releases.push(() => queue.obliterate({ force: true }).then(() => queue.close()));
    const now = 1_700_000_000_000;
    // Added first = oldest; if the reader looked at the head of the list it would see 10 s, not 120 s.
    await queue.add('x', {}, { timestamp: now - 120_000 });
    await queue.add('x', {}, { timestamp: now - 10_000 });
    const reader = createQueueStatsReader({
      connection: redis,
      prefix,
      modules: MODULES,
      queues: ['orders'],
      now: () => now,
    });
    releases.push(() => reader.close());
    expect(await reader.read('orders')).toMatchObject({
      waiting: 2,
      backlog: 2,
      oldestWaitingAgeSeconds: 120,
    });

    await queue.add('x', {}, { timestamp: now - 300_000, priority: 3 });
    expect(await reader.read('orders')).toMatchObject({
      waiting: 2,
      prioritized: 1,
      backlog: 3,
      oldestWaitingAgeSeconds: 300,
    });
    expect(reader.has('orders')).toBe(true);
    expect(reader.has('nope')).toBe(false);
  });
});

describe('job instruments', () => {
  it('counts completed, retried and finally failed jobs of a BullMQ worker and times them', async () => {
    const prefix = uniqueId('cvm');
    const metrics = createMetrics({ defaultMetrics: false });
    const queue = new Queue('orders', { connection: redis, prefix });
    const worker = new Worker(
      'orders',
      async (job) => {
        if (job.name === 'flaky' && job.attemptsMade === 0) throw new Error('first attempt fails');
        if (job.name === 'doomed') throw new Error('always fails');
        if (job.name === 'poison') throw new UnrecoverableError('never retried');
        return 'ok';
      },
      { connection: redis.duplicate(), prefix, concurrency: 4 },
    );
    const detach = metrics.instrumentWorker(worker, 'orders');
    releases.push(async () => {
      detach();
      await worker.close();
      await queue.obliterate({ force: true });
      await queue.close();
    });
    await queue.addBulk([
      { name: 'ok', data: {}, opts: { attempts: 3 } },
      { name: 'ok', data: {}, opts: { attempts: 3 } },
      { name: 'flaky', data: {}, opts: { attempts: 3 } },
      { name: 'doomed', data: {}, opts: { attempts: 2 } },
      { name: 'poison', data: {}, opts: { attempts: 5 } },
    ]);
    const text = await eventually(
      async () => {
        const t = await metrics.render();
        const done = sample(t, 'conveyor_jobs_completed_total', { queue: 'orders' });
        const failed = sample(t, 'conveyor_jobs_failed_total', { queue: 'orders' });
        return done === 3 && failed === 2 ? t : false;
      },
      { what: 'three jobs completed and two failed for good' },
    );
    // flaky: 1 retry; doomed: 1 retry then final; poison: final at once, despite attempts left.
    expect(sample(text, 'conveyor_jobs_retried_total', { queue: 'orders' })).toBe(2);
    expect(
      sample(text, 'conveyor_job_duration_seconds_count', { queue: 'orders', outcome: 'completed' }),
    ).toBe(3);
    expect(sample(text, 'conveyor_job_duration_seconds_count', { queue: 'orders', outcome: 'failed' })).toBe(
      4,
    );
    expect(sample(text, 'conveyor_job_latency_seconds_count', { queue: 'orders' })).toBe(3);
    await metrics.close();
  });
});

describe('scrape-time collectors', () => {
  it('drops a source that outlives the scrape timeout and marks it down, without failing the scrape', async () => {
    const metrics = createMetrics({ collectTimeoutMs: 100, defaultMetrics: false });
    let answer: (() => void) | undefined;
    metrics.watchOutbox(
      () => new Promise((resolve) => (answer = () => resolve({ count: 7, oldestAgeSeconds: 3 }))),
    );
    const started = Date.now();
    const slow = await metrics.render();
    expect(Date.now() - started).toBeLessThan(2_000);
    expect(sample(slow, 'conveyor_metrics_collector_up', { collector: 'outbox' })).toBe(0);
    expect(sample(slow, 'conveyor_outbox_unpublished_events')).toBeUndefined();
    answer?.();
    // watch* registers a source once: a second registration does not replace the first.
    metrics.watchOutbox(async () => ({ count: 1, oldestAgeSeconds: 1 }));
    const again = await metrics.render();
    expect(sample(again, 'conveyor_metrics_collector_up', { collector: 'outbox' })).toBe(0);
    expect(sample(again, 'conveyor_outbox_unpublished_events')).toBeUndefined();
    await metrics.close();
  });

  it('reports the outbox backlog, pool and connection stats and breaker states', async () => {
    const metrics = createMetrics({ defaultMetrics: false });
    metrics.watchOutbox(async () => ({ count: 4, oldestAgeSeconds: 2.5 }));
    metrics.watchPgPool('main', { totalCount: 3, idleCount: 1, waitingCount: 2 });
    metrics.watchRedis('main', redis);
    metrics.setCircuitBreakerState('payment', 'open');
    metrics.setCircuitBreakerState('inventory', 'half-open');
    const text = await metrics.render();
    expect(sample(text, 'conveyor_outbox_unpublished_events')).toBe(4);
    expect(sample(text, 'conveyor_outbox_oldest_unpublished_age_seconds')).toBe(2.5);
    expect(sample(text, 'conveyor_pg_pool_clients', { pool: 'main' })).toBe(3);
    expect(sample(text, 'conveyor_pg_pool_idle_clients', { pool: 'main' })).toBe(1);
    expect(sample(text, 'conveyor_pg_pool_waiting_requests', { pool: 'main' })).toBe(2);
    expect(sample(text, 'conveyor_redis_connection_up', { connection: 'main' })).toBe(
      redis.status === 'ready' ? 1 : 0,
    );
    expect(sample(text, 'conveyor_circuit_breaker_state', { breaker: 'payment' })).toBe(2);
    expect(sample(text, 'conveyor_circuit_breaker_state', { breaker: 'inventory' })).toBe(1);
    metrics.setCircuitBreakerState('payment', 'closed');
    expect(sample(await metrics.render(), 'conveyor_circuit_breaker_state', { breaker: 'payment' })).toBe(0);
    await metrics.close();
  });

  it('measures Kafka consumer-group lag per partition from the committed offsets', async () => {
    const topic = `conveyor.${uniqueId('lag')}`;
    const group = `conveyor-${uniqueId('lag')}`;
    const kafka = new Kafka({ clientId: 'metrics-test', brokers: KAFKA_BROKERS, logLevel: logLevel.NOTHING });
    const admin = kafka.admin();
    await admin.connect();
    releases.push(async () => {
      await admin.deleteGroups([group]).catch(() => undefined);
      await admin.deleteTopics({ topics: [topic] }).catch(() => undefined);
      await admin.disconnect();
    });
    await admin.createTopics({ topics: [{ topic, numPartitions: 2 }], waitForLeaders: true });
    const producer = kafka.producer();
    await producer.connect();
    const msgs = (partition: number, n: number) =>
      Array.from({ length: n }, (_, i) => ({ partition, value: `m${i}` }));
    await producer.send({ topic, acks: -1, messages: [...msgs(0, 5), ...msgs(1, 3)] });
    await producer.disconnect();
    await admin.setOffsets({ groupId: group, topic, partitions: [{ partition: 0, offset: '2' }] });

    const metrics = createMetrics({ defaultMetrics: false, collectTimeoutMs: 10_000 });
    // `.retry` does not exist: it is skipped, not an error.
    metrics.watchKafkaLag({
      brokers: KAFKA_BROKERS,
      clientId: 'metrics-test',
      topics: [topic, `${topic}.retry`],
      groups: [group],
    });
    releases.push(() => metrics.close());
    const text = await metrics.render();
    expect(sample(text, 'conveyor_metrics_collector_up', { collector: 'kafka' })).toBe(1);
    expect(sample(text, 'conveyor_kafka_consumer_group_lag', { group, topic, partition: '0' })).toBe(3);
    // Never committed: counted from the low watermark.
    expect(sample(text, 'conveyor_kafka_consumer_group_lag', { group, topic, partition: '1' })).toBe(3);

    const reader = createKafkaLagReader({
      brokers: ['127.0.0.1:1'],
      clientId: 't',
      topics: [topic],
      groups: [group],
      requestTimeoutMs: 300,
    });
    await expect(reader.read()).rejects.toThrow();
    await reader.close();
  });

  it('reads RabbitMQ ready-message and consumer counts, skipping queues that do not exist', async () => {
    const queue = `conveyor.${uniqueId('depth')}`;
    const conn = await connect(RABBITMQ_URL);
    const ch = await conn.createConfirmChannel();
    releases.push(async () => {
      await ch.deleteQueue(queue).catch(() => undefined);
      await conn.close();
    });
    await ch.assertQueue(queue, { durable: false });
    for (let i = 0; i < 4; i++) ch.sendToQueue(queue, Buffer.from(`m${i}`));
    await ch.waitForConfirms();

    const reader = createRabbitmqDepthReader({ url: RABBITMQ_URL, queues: [`${queue}.missing`, queue] });
    releases.push(() => reader.close());
    expect(await reader.read()).toEqual([{ queue, messages: 4, consumers: 0 }]);
    // Again on the same connection: the 404 of the missing queue closed only a channel.
    expect(await reader.read()).toEqual([{ queue, messages: 4, consumers: 0 }]);

    const metrics = createMetrics({ defaultMetrics: false });
    metrics.watchRabbitmq({ url: RABBITMQ_URL, queues: [queue] });
    releases.push(() => metrics.close());
    const text = await metrics.render();
    expect(sample(text, 'conveyor_rabbitmq_queue_messages', { queue })).toBe(4);
    expect(sample(text, 'conveyor_rabbitmq_queue_consumers', { queue })).toBe(0);
  });
});

describe('work that sits where no operator looks', () => {
  /** Moves the next job of `queue` to its failed set, as BullMQ does after a last failed attempt. */
  async function failNext(name: string, prefix: string): Promise<void> {
    const worker = new Worker(name, null, { connection: redis.duplicate(), prefix, autorun: false });
    try {
      const job = await worker.getNextJob('metrics-test');
      if (!job) throw new Error(`no job in ${name}`);
      await job.moveToFailed(new Error('stranded'), 'metrics-test');
    } finally {
      await worker.close();
    }
  }

  it('exports failed sets of every queue (event groups included) and BullMQ dead-letter copies', async () => {
    const prefix = uniqueId('cvm');
    // A group registered by the bus: its queue is `events.audit`, in no static list.
    await redis.sadd(bullmqGroupsKey(prefix), 'audit');
    const copies = commandQueues('orders').deadLetters;
    const queues = [QueueNames.events, `${QueueNames.events}.audit`, copies].map(
      (name) => new Queue(name, { connection: redis, prefix }),
    );
    releases.push(async () => {
      for (const q of queues) await q.obliterate({ force: true }).then(() => q.close());
      await redis.del(bullmqGroupsKey(prefix));
    });
    for (const q of queues.slice(0, 2)) await q.add('event', {}, { attempts: 1 });
    await failNext(QueueNames.events, prefix);
    await failNext(`${QueueNames.events}.audit`, prefix);
    await queues[2]!.add('place-order', {}, { jobId: 'bullmq-orders-x' });

    const metrics = createMetrics({ defaultMetrics: false });
    releases.push(() => metrics.close());
    metrics.watchQueues({ connection: redis, prefix, modules: MODULES });
    const text = await metrics.render();
    expect(sample(text, 'conveyor_queue_jobs', { queue: QueueNames.events, state: 'failed' })).toBe(1);
    expect(sample(text, 'conveyor_queue_jobs', { queue: 'events.audit', state: 'failed' })).toBe(1);
    expect(sample(text, 'conveyor_queue_jobs', { queue: 'orders', state: 'failed' })).toBe(0);
    expect(sample(text, 'conveyor_native_dlq_messages', { transport: 'bullmq', queue: copies })).toBe(1);
    // An empty one reads 0: a dead-letter queue nobody fills is measured, not missing.
    expect(
      sample(text, 'conveyor_native_dlq_messages', { transport: 'bullmq', queue: 'events-dead-letters' }),
    ).toBe(0);
    expect(promtool(text)).toEqual({ status: 0, output: '' });

    // The group retired (its queue obliterated, its name removed): its series go with it.
    await redis.srem(bullmqGroupsKey(prefix), 'audit');
    expect(
      sample(await metrics.render(), 'conveyor_queue_jobs', { queue: 'events.audit', state: 'failed' }),
    ).toBeUndefined();
  });

  it('exports the messages in RabbitMQ, SQS and Kafka dead-letter queues', async () => {
    // RabbitMQ: `<queue>.dlq` holds what the broker dead-lettered (issue #19: 1,364 after an outage).
    const queue = `conveyor.${uniqueId('dlq')}`;
    const conn = await connect(RABBITMQ_URL);
    const ch = await conn.createConfirmChannel();
    releases.push(async () => {
      for (const q of [queue, `${queue}.dlq`]) await ch.deleteQueue(q).catch(() => undefined);
      await conn.close();
    });
    await ch.assertQueue(queue, { durable: false });
    await ch.assertQueue(`${queue}.dlq`, { durable: false });
    for (let i = 0; i < 3; i++) ch.sendToQueue(`${queue}.dlq`, Buffer.from(`m${i}`));
    ch.sendToQueue(queue, Buffer.from('work'));
    await ch.waitForConfirms();

    // SQS (ElasticMQ): the DLQ's approximate count.
    const sqsName = `conveyor-${uniqueId('dlq').replace(/_/g, '-')}-projections`;
    const client = createSqsClient({ endpoint: SQS_ENDPOINT, region: 'elasticmq' });
    const urls: string[] = [];
    releases.push(async () => {
      for (const QueueUrl of urls)
        await client.send(new DeleteQueueCommand({ QueueUrl })).catch(() => undefined);
      client.destroy();
    });
    for (const name of [sqsName, `${sqsName}-dlq`]) {
      const { QueueUrl } = await client.send(new CreateQueueCommand({ QueueName: name }));
      urls.push(QueueUrl!);
    }
    for (const i of [1, 2])
      await client.send(new SendMessageCommand({ QueueUrl: urls[1], MessageBody: `m${i}` }));

    // Kafka: `<topic>.dlq` retains its dead letters (high − low watermark).
    const topic = `conveyor.${uniqueId('dlq')}`;
    const kafka = new Kafka({ clientId: 'metrics-test', brokers: KAFKA_BROKERS, logLevel: logLevel.NOTHING });
    const admin = kafka.admin();
    await admin.connect();
    releases.push(async () => {
      await admin.deleteTopics({ topics: [topic, `${topic}.dlq`] }).catch(() => undefined);
      await admin.disconnect();
    });
    await admin.createTopics({
      topics: [
        { topic, numPartitions: 2 },
        { topic: `${topic}.dlq`, numPartitions: 2 },
      ],
      waitForLeaders: true,
    });
    const producer = kafka.producer();
    await producer.connect();
    await producer.send({
      topic: `${topic}.dlq`,
      acks: -1,
      messages: [0, 1, 1, 1].map((partition, i) => ({ partition, value: `d${i}` })),
    });
    await producer.disconnect();

    const metrics = createMetrics({ defaultMetrics: false, collectTimeoutMs: 10_000 });
    releases.push(() => metrics.close());
    // As workers/metrics-server.ts registers them: the DLQs found by their names.
    metrics.watchRabbitmq({ url: RABBITMQ_URL, queues: [queue, `${queue}.dlq`] });
    metrics.watchSqs({ endpoint: SQS_ENDPOINT, region: 'elasticmq', queues: [sqsName, `${sqsName}-dlq`] });
    metrics.watchKafkaLag({
      brokers: KAFKA_BROKERS,
      clientId: 'metrics-test',
      topics: [topic, `${topic}.retry`],
      groups: [`conveyor-${uniqueId('dlq')}`],
    });
    const text = await eventually(
      async () => {
        const t = await metrics.render();
        // SQS's approximate counts may lag a moment behind the sends.
        return sample(t, 'conveyor_native_dlq_messages', { transport: 'sqs', queue: `${sqsName}-dlq` }) === 2
          ? t
          : undefined;
      },
      { what: 'the SQS DLQ count' },
    );
    const native = (transport: string, q: string) =>
      sample(text, 'conveyor_native_dlq_messages', { transport, queue: q });
    expect(native('rabbitmq', `${queue}.dlq`)).toBe(3);
    expect(native('rabbitmq', queue)).toBeUndefined(); // a work queue is not a dead-letter queue
    expect(native('sqs', sqsName)).toBeUndefined();
    expect(native('kafka', `${topic}.dlq`)).toBe(4);
    expect(sample(text, 'conveyor_metrics_collector_up', { collector: 'kafka_dlq' })).toBe(1);
    expect(promtool(text)).toEqual({ status: 0, output: '' });
  });
});

describe('GET /metrics of real processes', () => {
  it('passes `promtool check metrics` for the API and a worker process after traffic', async () => {
    const env = isolatedEnv({ METRICS_PORT: '0', WORKER_KINDS: 'orders,outbox,projections' });
    const config = loadConfig(env, { modules: MODULES });
    releases.push(() => cleanup(config));
    const api = await startServer('api/main.ts', env);
    releases.push(() => api.kill());
    const workers: Proc = startProcess('workers/main.ts', env);
    releases.push(() => workers.kill());
    const metricsPort = await eventually(
      () => {
        if (workers.child.exitCode !== null)
          throw new Error(`workers exited:\n${workers.lines.slice(-20).join('\n')}`);
        const line = workers.lines.find((l) => l.includes('"metrics server listening"'));
        return line ? (JSON.parse(line) as { port: number }).port : undefined;
      },
      { what: 'the workers metrics server', timeoutMs: 30_000 },
    );
    const workerUrl = `http://127.0.0.1:${metricsPort}`;
    expect((await fetch(`${workerUrl}/healthz`)).status).toBe(200);
    expect((await fetch(`${workerUrl}/readyz`)).status).toBe(200);

    const N = 4;
    const ids: string[] = [];
    for (let i = 0; i < N; i++) {
      const res = await request(`${api.url}/v1/orders`, { method: 'POST', json: sampleOrder() });
      expect(res.status).toBe(202);
      ids.push(res.body.orderId as string);
    }
    const workerText = await eventually(
      async () => {
        const t = await (await fetch(`${workerUrl}/metrics`)).text();
        const orders = sample(t, 'conveyor_jobs_completed_total', { queue: OrdersQueues.commands });
        const events = sample(t, 'conveyor_jobs_completed_total', { queue: QueueNames.events }) ?? 0;
        // The relay's batches travel as event jobs of up to 100 events: at least one job, not one per event.
        return orders === N && events >= 1 && sample(t, 'conveyor_outbox_unpublished_events') === 0
          ? t
          : false;
      },
      { what: 'orders processed and relayed', timeoutMs: 30_000 },
    );
    await eventually(
      async () => {
        const res = await request<{ orders: { status: string; updatedAt: string | null }[] }>(
          `${api.url}/v1/orders?ids=${ids.join(',')}`,
        );
        // updatedAt is set once the read model has the order (before, it reads from the write model).
        return res.body.orders?.filter((o) => o.status === 'completed' && o.updatedAt !== null).length === N;
      },
      { what: 'orders projected', timeoutMs: 30_000 },
    );
    expect(
      sample(workerText, 'conveyor_job_duration_seconds_count', { queue: 'orders', outcome: 'completed' }),
    ).toBe(N);
    expect(sample(workerText, 'conveyor_pg_pool_clients', { pool: 'main' })).toBeGreaterThan(0);
    expect(sample(workerText, 'conveyor_redis_connection_up', { connection: 'main' })).toBe(1);
    expect(sample(workerText, 'process_cpu_seconds_total')).toBeGreaterThan(0);
    // The event-loop delay histogram: cumulative buckets up to +Inf = the sample count.
    const loopSamples = sample(workerText, 'conveyor_eventloop_delay_seconds_count') ?? 0;
    expect(loopSamples).toBeGreaterThan(0);
    expect(sample(workerText, 'conveyor_eventloop_delay_seconds_bucket', { le: '+Inf' })).toBe(loopSamples);
    expect(sample(workerText, 'conveyor_eventloop_delay_seconds_bucket', { le: '1' })).toBeLessThanOrEqual(
      loopSamples,
    );

    await request(`${api.url}/v1/orders/${ids[0]}`);
    expect((await fetch(`${api.url}/no/such/${randomUUID()}`)).status).toBe(404);
    const apiText = await (await fetch(`${api.url}/metrics`)).text();
    const count = (route: string, method: string, status: string) =>
      sample(apiText, 'conveyor_http_request_duration_seconds_count', { route, method, status });
    expect(count('/v1/orders', 'POST', '202')).toBe(N);
    expect(count('/v1/orders/:orderId', 'GET', '200')).toBe(1);
    expect(count('unmatched', 'GET', '404')).toBe(1);
    // Route patterns, never raw paths: no order id becomes a label value.
    expect(apiText).not.toContain(ids[0]);
    expect(sample(apiText, 'conveyor_queue_jobs', { queue: 'orders', state: 'completed' })).toBe(N);

    for (const [who, text] of [
      ['api', apiText],
      ['workers', workerText],
    ] as const) {
      const lint = promtool(text);
      expect({ who, ...lint }).toEqual({ who, status: 0, output: '' });
    }
  });
});
