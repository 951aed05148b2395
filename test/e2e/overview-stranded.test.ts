import { CreateQueueCommand, DeleteQueueCommand, SendMessageCommand } from '@aws-sdk/client-sqs';
import { connect } from 'amqplib';
import { Queue, Worker } from 'bullmq';
import { Redis } from 'ioredis';
import { Kafka, logLevel } from 'kafkajs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createOverviewSource, type Overview } from '../../dashboard/overview/overview.ts';
import { startDashboard } from '../../dashboard/server.ts';
import { bullmqGroupsKey } from '../../shared/bus/bullmq/bus.ts';
import { sqsGroupQueues } from '../../shared/bus/sqs/bus.ts';
import { createSqsClient } from '../../shared/bus/sqs/client.ts';
import type { Config } from '../../shared/config/config.ts';
import { commandQueues, QueueNames } from '../../shared/queue/names.ts';
import { eventually, testConfig } from '../support/env.ts';
import { startPlatform, type Platform } from '../support/platform.ts';

// Issue #19: the Overview said "Healthy" while 101 jobs sat in the `events` queue's failed set,
// 1,364 messages in a RabbitMQ `<queue>.dlq` without dead-letter rows, and outbox rows went
// unpublished. Over HTTP against a real dashboard, Redis and PostgreSQL (no workers run: nothing moves
// what the test puts there), then the Overview's source against real RabbitMQ, SQS and Kafka.
const OPERATOR = { user: 'stranded-admin', password: 'stranded-admin-secret' };

let platform: Platform;
let base: string;
let cookie: string;
const cleanups: (() => Promise<unknown>)[] = [];
const query = (sql: string, params: unknown[] = []) => platform.rt.pool.query(sql, params);

beforeAll(async () => {
  platform = await startPlatform(
    testConfig({
      DASHBOARD_PORT: '0',
      DASHBOARD_USER: OPERATOR.user,
      DASHBOARD_PASSWORD: OPERATOR.password,
    }),
    { workers: [] },
  );
  const dashboard = await startDashboard(platform.rt); // closed by the platform's lifecycle
  base = `http://127.0.0.1:${dashboard.port}`;
  const login = await fetch(`${base}/dashboard/login`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded', origin: base },
    body: new URLSearchParams({ username: OPERATOR.user, password: OPERATOR.password }).toString(),
    redirect: 'manual',
  });
  expect(login.status).toBe(303);
  cookie = login.headers.getSetCookie()[0]!.split(';')[0]!;
});

afterAll(async () => {
  for (const undo of cleanups.toReversed()) await undo().catch(() => undefined);
  await platform?.close();
});

const decode = (html: string) =>
  html
    .replace(/<[^>]+>/g, '')
    .replace(/&quot;|&#34;/g, '"')
    .replace(/&#39;/g, "'")
    .replace(/&amp;/g, '&')
    .replace(/\s+/g, ' ')
    .trim();

/** The Overview page as an operator gets it: its verdict and each finding. */
async function overviewPage(): Promise<{ level: string; label: string; findings: string[]; html: string }> {
  const res = await fetch(`${base}/dashboard`, { headers: { cookie }, redirect: 'manual' });
  expect(res.status).toBe(200);
  const html = await res.text();
  const verdict = /<section class="verdict (\w+)"[^>]*>([\s\S]*?)<\/section>/.exec(html);
  expect(verdict).not.toBeNull();
  const label = decode(/<div class="state">([\s\S]*?)<\/div>/.exec(verdict![2]!)![1]!);
  const findings = [...verdict![2]!.matchAll(/<li class="\w+">([\s\S]*?)<\/li>/g)].map((m) => decode(m[1]!));
  return { level: verdict![1]!, label, findings, html };
}

async function healthy(): Promise<void> {
  const page = await overviewPage();
  expect({ level: page.level, label: page.label, findings: page.findings }).toEqual({
    level: 'healthy',
    label: 'Healthy',
    findings: [],
  });
}

/** A BullMQ queue of the platform's prefix, obliterated at the end. */
function queueOf(name: string): Queue {
  const q = new Queue(name, { connection: platform.rt.redis, prefix: platform.config.redis.queuePrefix });
  cleanups.push(() => q.obliterate({ force: true }).then(() => q.close()));
  return q;
}

/** Adds a job to `queue` and moves it to the failed set, as BullMQ does after a last failed attempt. */
async function strandOne(queue: Queue): Promise<void> {
  await queue.add('event', { stranded: true }, { attempts: 1 });
  const connection = new Redis(platform.config.redis.url, { maxRetriesPerRequest: null });
  const worker = new Worker(queue.name, null, {
    connection,
    prefix: platform.config.redis.queuePrefix,
    autorun: false,
  });
  try {
    const job = await worker.getNextJob('overview-test');
    await job!.moveToFailed(new Error('the dead letter could not be recorded'), 'overview-test');
  } finally {
    await worker.close();
    connection.disconnect();
  }
}

describe('the Overview flags work that sits where no operator looks', () => {
  it('reads Healthy on an idle platform, so every finding below is the test’s doing', async () => {
    await healthy();
  });

  it('is Unhealthy while one job sits in the failed set of `events` or of a group’s `events.<group>`', async () => {
    const events = queueOf(QueueNames.events);
    await strandOne(events);
    let page = await overviewPage();
    expect(page.level).toBe('unhealthy');
    expect(page.findings).toContain(
      'Queue "events": 1 job in BullMQ\'s failed set — retried by nothing, shown by no dead letter',
    );
    expect(page.html).toMatch(/data-testid="failed-events">1</);
    await events.clean(0, 0, 'failed');
    await healthy();

    // A group the BullMQ bus registered: its queue is in no static list, its failed set counts too.
    const key = bullmqGroupsKey(platform.config.redis.queuePrefix);
    await platform.rt.redis.sadd(key, 'audit');
    cleanups.push(() => platform.rt.redis.del(key));
    const audit = queueOf(`${QueueNames.events}.audit`);
    await strandOne(audit);
    page = await overviewPage();
    expect(page.level).toBe('unhealthy');
    expect(page.findings).toContain(
      'Queue "events.audit": 1 job in BullMQ\'s failed set — retried by nothing, shown by no dead letter',
    );
    await audit.obliterate({ force: true });
    await platform.rt.redis.srem(key, 'audit');
    await healthy();
  });

  it('is Unhealthy while an outbox row is unpublished past 5 minutes, and needs attention past 30 s', async () => {
    const insert = (eventId: string, age: string) =>
      query(
        `INSERT INTO outbox (event_id, event_type, event_version, aggregate_id, correlation_id, envelope, created_at)
         VALUES ($1, 'order.placed', 1, 'o-stuck', 'c-stuck', '{}', now() - $2::interval)`,
        [eventId, age],
      );
    await insert('00000000-0000-4000-8000-000000000019', '6 minutes');
    let page = await overviewPage();
    expect(page.level).toBe('unhealthy');
    expect(page.findings.join('\n')).toMatch(/^Outbox: 1 event unpublished, the oldest for 3[67]\d s$/m);
    await query(`UPDATE outbox SET created_at = now() - interval '45 seconds'`);
    page = await overviewPage();
    expect({ level: page.level, findings: page.findings }).toEqual({
      level: 'attention',
      findings: [expect.stringMatching(/^Outbox: 1 event unpublished, the oldest for 4\d s$/)],
    });
    await query(`UPDATE outbox SET published_at = now()`);
    await healthy();
  });

  it('is Unhealthy while a BullMQ dead-letter queue holds a copy no pending dead letter accounts for', async () => {
    const copies = queueOf(commandQueues('orders').deadLetters);
    const id = 'bullmq-orders-stranded-1';
    await copies.add('place-order', {}, { jobId: id });
    let page = await overviewPage();
    expect(page.level).toBe('unhealthy');
    expect(page.findings).toContain(
      'BullMQ dead-letter queue "orders-dead-letters" holds 1 message, only 0 pending dead letters account for them: 1 sit where no operator looks',
    );
    // Its dead letter recorded: an operator's decision waits, and that is all the Overview says.
    await query(
      `INSERT INTO dead_letters (id, transport, origin, kind, payload, error, attempts)
       VALUES ($1, 'bullmq', 'orders', 'command', '\\x7b7d', 'stranded', 1)`,
      [id],
    );
    page = await overviewPage();
    expect({ level: page.level, findings: page.findings }).toEqual({
      level: 'attention',
      findings: ["1 dead letter pending an operator's decision"],
    });
    await copies.obliterate({ force: true });
    await query(`DELETE FROM dead_letters WHERE id = $1`, [id]);
    await healthy();
  });
});

describe('the Overview reads each broker’s own dead-letter queue', () => {
  /** The Overview of the same platform, as a console on `bus` would read it. */
  async function readAs(bus: Config['bus']['kind']): Promise<Overview> {
    const source = createOverviewSource({
      config: { ...platform.config, bus: { ...platform.config.bus, kind: bus } },
      pool: platform.rt.pool,
      redis: platform.rt.redis,
      timeoutMs: 10_000,
    });
    try {
      return await source.read();
    } finally {
      await source.close();
    }
  }
  /** Until `n` messages of `queue` are counted, recorded ones as `recorded`. */
  const counted = (bus: Config['bus']['kind'], queue: string, n: number) =>
    eventually(
      async () => {
        const o = await readAs(bus);
        const d = o.nativeDeadLetters.ok
          ? o.nativeDeadLetters.value.find((x) => x.queue === queue)
          : undefined;
        return d?.messages === n ? o : undefined;
      },
      { what: `${n} messages in ${queue}` },
    );
  const recordRows = (transport: string, origin: string, n: number) =>
    Promise.all(
      Array.from({ length: n }, (_, i) =>
        query(
          `INSERT INTO dead_letters (id, transport, origin, kind, payload, error, attempts, status)
           VALUES ($1, $2, $3, 'event', '\\x7b7d', 'recorded', 5, 'discarded')`,
          [`${transport}-${origin}-m${i}`, transport, origin],
        ),
      ),
    );

  it('RabbitMQ `<queue>.dlq`: unrecorded messages are Unhealthy, recorded copies need a purge', async () => {
    const { queue } = platform.config.bus.rabbitmq;
    const conn = await connect(platform.config.bus.rabbitmq.url);
    const ch = await conn.createConfirmChannel();
    cleanups.push(async () => {
      await ch.deleteQueue(`${queue}.dlq`).catch(() => undefined);
      await conn.close();
    });
    await ch.assertQueue(`${queue}.dlq`, { durable: false });
    // What a quorum queue's delivery limit does during an outage: the broker moves them, no row.
    for (let i = 0; i < 3; i++) ch.sendToQueue(`${queue}.dlq`, Buffer.from(`{"n":${i}}`));
    await ch.waitForConfirms();
    let o = await counted('rabbitmq', `${queue}.dlq`, 3);
    expect(o.level).toBe('unhealthy');
    expect(o.findings.map((f) => f.text)).toContain(
      `RabbitMQ dead-letter queue "${queue}.dlq" holds 3 messages, only 0 dead letters from ${queue} account for them: 3 sit where no operator looks`,
    );
    // Recorded (and handled) dead letters: the copies stay until someone purges them.
    await recordRows('rabbitmq', queue, 3);
    o = await readAs('rabbitmq');
    expect(o.level).toBe('attention');
    expect(o.findings.map((f) => f.text)).toContain(
      `RabbitMQ dead-letter queue "${queue}.dlq" holds 3 messages, each recorded as a dead letter; purge it once they are handled`,
    );
    await ch.purgeQueue(`${queue}.dlq`);
    o = await readAs('rabbitmq');
    expect(o.nativeDeadLetters).toEqual({ ok: true, value: [] });
  });

  it('SQS: the DLQ’s approximate count, unrecorded messages Unhealthy', async () => {
    const { sqs } = platform.config.bus;
    const names = sqsGroupQueues(sqs);
    const client = createSqsClient({ endpoint: sqs.endpoint, region: sqs.region });
    const url = (await client.send(new CreateQueueCommand({ QueueName: names.dlq }))).QueueUrl!;
    cleanups.push(async () => {
      await client.send(new DeleteQueueCommand({ QueueUrl: url })).catch(() => undefined);
      client.destroy();
    });
    // What the redrive policy's maxReceiveCount does by itself: moved, no row.
    for (const n of [1, 2])
      await client.send(new SendMessageCommand({ QueueUrl: url, MessageBody: `{"n":${n}}` }));
    const o = await counted('sqs', names.dlq, 2);
    expect(o.level).toBe('unhealthy');
    expect(o.findings.map((f) => f.text)).toContain(
      `SQS dead-letter queue "${names.dlq}" holds 2 messages, only 0 dead letters from ${names.queue} account for them: 2 sit where no operator looks`,
    );
  });

  it('Kafka `<topic>.dlq`: its retained messages, unrecorded ones Unhealthy', async () => {
    const { kafka: k } = platform.config.bus;
    const kafka = new Kafka({
      clientId: 'overview-test',
      brokers: [...k.brokers],
      logLevel: logLevel.NOTHING,
    });
    const admin = kafka.admin();
    await admin.connect();
    cleanups.push(async () => {
      await admin.deleteTopics({ topics: [`${k.topic}.dlq`] }).catch(() => undefined);
      await admin.disconnect();
    });
    await admin.createTopics({
      topics: [{ topic: `${k.topic}.dlq`, numPartitions: 1 }],
      waitForLeaders: true,
    });
    const producer = kafka.producer();
    await producer.connect();
    await producer.send({ topic: `${k.topic}.dlq`, acks: -1, messages: [{ value: 'a' }, { value: 'b' }] });
    await producer.disconnect();
    await recordRows('kafka', k.topic, 1);
    const o = await counted('kafka', `${k.topic}.dlq`, 2);
    expect(o.level).toBe('unhealthy');
    expect(o.findings.map((f) => f.text)).toContain(
      `Kafka dead-letter topic "${k.topic}.dlq" holds 2 messages, only 1 dead letters from ${k.topic} account for them: 1 sit where no operator looks`,
    );
    expect(o.bus.depth).toMatchObject({
      ok: true,
      value: expect.arrayContaining([{ label: `messages in ${k.topic}.dlq`, value: 2 }]),
    });
  });
});
