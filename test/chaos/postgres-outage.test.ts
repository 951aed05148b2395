import { GetQueueAttributesCommand, GetQueueUrlCommand, SQSClient } from '@aws-sdk/client-sqs';
import amqp from 'amqplib';
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { Kafka, logLevel } from 'kafkajs';
import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MODULES } from '../../modules/registry.ts';
import { groupQueueNames } from '../../shared/bus/sqs/topology.ts';
import { loadConfig } from '../../shared/config/config.ts';
import { commandQueues, QueueNames } from '../../shared/queue/names.ts';
import { PROJECTOR_CONSUMER } from '../../workers/projections/projector.ts';
import { sqsEndpoint } from '../support/elasticmq-server.ts';
import { eventually } from '../support/env.ts';
import { startFakePayment, type FakePayment } from '../support/fake-payment.ts';
import { request } from '../support/http.ts';
import { ownPostgres, type OwnPostgres } from '../support/postgres-server.ts';
import { logRecords, type Proc } from '../support/processes.ts';
import {
  chaosEnv,
  countOrders,
  linesWith,
  makeOrders,
  openDb,
  placeBatch,
  startApi,
  startWorkers,
  teardown,
  type Env,
} from './harness.ts';
import { awaitReconciled } from './reconcile.ts';

// Issue #19's scenario, with the settings users get: the write model's PostgreSQL stops for 60 s in the
// middle of a drain of a few thousand orders, then starts — on every bus at once (one cluster, one
// outage, four deployments side by side). An outage is nobody's fault: it must cost no command and no
// event an attempt, so with the DEFAULT attempts and backoffs (a test that raises them hides exactly the
// loss it exists to find) nothing is dead-lettered, no job ends in a failed set, no message sits in a
// broker's own DLQ, and the write model, the read models and /v1/stats agree exactly.
const ALL_BUSES = ['bullmq', 'kafka', 'rabbitmq', 'sqs'] as const;
type Bus = (typeof ALL_BUSES)[number];
/** Every bus; `CHAOS_PG_BUSES=bullmq,kafka` narrows a reproduction run to some (the settings stay as shipped). */
const BUSES: readonly Bus[] = ALL_BUSES.filter(
  (b) => !process.env.CHAOS_PG_BUSES || process.env.CHAOS_PG_BUSES.split(',').includes(b),
);
/** Per bus and wave: one wave drained before the outage, one in flight when it begins. */
const ORDERS_PER_BUS = 1_000;
const OUTAGE_MS = 60_000;
/** A loaded machine may answer a batch 503 (Redis slow to answer): sent again with its Idempotency-Key. */
const RETRY_503 = { retryUnavailableMs: 30_000 };

/** The chaos environment without the test defaults that shorten retries: attempts and backoffs as shipped. */
function withShippedRetries(env: Env): Env {
  for (const key of Object.keys(env))
    if (
      /^(BUS_(MAX_ATTEMPTS|BACKOFF_MS|SNOOZE_MS|SNOOZE_MAX_MS)|[A-Z]+_(ATTEMPTS|BACKOFF_MS|BACKOFF_MAX_MS))$/.test(
        key,
      )
    )
      delete env[key];
  return env;
}

interface Deployment {
  bus: Bus;
  env: Env;
  db: pg.Pool;
  api?: Proc & { url: string };
  workers?: Proc;
  projections?: Proc;
  accepted: string[];
}

/** Jobs in BullMQ `failed` sets and in the transport's own dead-letter places: both must be empty. */
async function strandedWork(d: Deployment): Promise<Record<string, number>> {
  const config = loadConfig(d.env, { modules: MODULES });
  const redis = new Redis(config.redis.url, { maxRetriesPerRequest: null });
  const counts: Record<string, number> = {};
  const queues: Queue[] = [];
  const open = (name: string) => {
    const q = new Queue(name, { connection: redis, prefix: config.redis.queuePrefix });
    queues.push(q);
    return q;
  };
  try {
    for (const m of MODULES) {
      const names = commandQueues(m.name);
      counts[`${names.commands} failed`] = await open(names.commands).getFailedCount();
      counts[`${names.deadLetters} jobs`] = Object.values(
        await open(names.deadLetters).getJobCounts(),
      ).reduce((a, b) => a + b, 0);
    }
    if (d.bus === 'bullmq') {
      counts[`${QueueNames.events} failed`] = await open(QueueNames.events).getFailedCount();
      counts[`${QueueNames.eventsDeadLetters} jobs`] = Object.values(
        await open(QueueNames.eventsDeadLetters).getJobCounts(),
      ).reduce((a, b) => a + b, 0);
    }
  } finally {
    await Promise.all(queues.map((q) => q.close()));
    redis.disconnect();
  }
  if (d.bus === 'rabbitmq') {
    const conn = await amqp.connect(config.bus.rabbitmq.url);
    try {
      const channel = await conn.createChannel();
      const dlq = `${config.bus.rabbitmq.queue}.dlq`;
      counts[dlq] = (await channel.checkQueue(dlq)).messageCount;
    } finally {
      await conn.close();
    }
  }
  if (d.bus === 'kafka') {
    const admin = new Kafka({
      clientId: 'chaos-pg-outage',
      brokers: [...config.bus.kafka.brokers],
      logLevel: logLevel.NOTHING,
    }).admin();
    try {
      // A loaded broker may answer a metadata request from a stale leader ("not the leader for that
      // topic-partition") or time out: the check is retried, it is not what is being tested.
      const dlq = `${config.bus.kafka.topic}.dlq`;
      counts[dlq] = await eventually(
        async () => {
          await admin.connect();
          const offsets = await admin.fetchTopicOffsets(dlq);
          return offsets.reduce((n, o) => n + Number(o.high) - Number(o.low), 0);
        },
        { what: `the offsets of ${dlq}`, timeoutMs: 30_000, intervalMs: 1_000 },
      );
    } finally {
      await admin.disconnect();
    }
  }
  if (d.bus === 'sqs') {
    const sqs = new SQSClient({
      endpoint: config.bus.sqs.endpoint,
      region: config.bus.sqs.region,
      credentials: { accessKeyId: 'x', secretAccessKey: 'x' },
    });
    try {
      const { dlq } = groupQueueNames(config.bus.sqs.queuePrefix, PROJECTOR_CONSUMER, config.bus.sqs.fifo);
      const { QueueUrl } = await sqs.send(new GetQueueUrlCommand({ QueueName: dlq }));
      const out = await sqs.send(
        new GetQueueAttributesCommand({
          QueueUrl,
          AttributeNames: ['ApproximateNumberOfMessages', 'ApproximateNumberOfMessagesNotVisible'],
        }),
      );
      counts[dlq] =
        Number(out.Attributes?.ApproximateNumberOfMessages ?? 0) +
        Number(out.Attributes?.ApproximateNumberOfMessagesNotVisible ?? 0);
    } finally {
      sqs.destroy();
    }
  }
  return counts;
}

/**
 * Why a deployment dead-lettered anything: each dead letter's recorded error (grouped, with a count
 * and its attempts), then the warnings and errors of its processes that name those messages (the
 * retries, the stalls, the move to dead letters) — so a failure of this test explains itself.
 */
async function deadLetterReasons(d: Deployment): Promise<string[]> {
  const { rows } = await d.db.query<{
    kind: string;
    origin: string;
    error: string;
    attempts: number;
    n: number;
    ids: string[];
  }>(
    `SELECT kind, origin, left(error, 300) AS error, attempts, count(*)::int AS n,
            (array_agg(coalesce(order_id, message_key, id) ORDER BY failed_at))[1:3] AS ids
       FROM dead_letters GROUP BY kind, origin, left(error, 300), attempts ORDER BY n DESC`,
  );
  const subjects = new Set(rows.flatMap((r) => r.ids));
  const said = [d.workers, d.projections]
    .flatMap((p) => (p ? logRecords(p) : []))
    .filter((l) => typeof l.level === 'number' && l.level >= 40)
    .map((l) => JSON.stringify(l))
    .filter((line) => [...subjects].some((id) => line.includes(id)))
    .slice(0, 20)
    .map((line) => line.slice(0, 800));
  return [
    ...rows.map(
      (r) =>
        `${r.n}× ${r.kind} from ${r.origin} after ${r.attempts} attempt(s): ${r.error} (${r.ids.join(', ')})`,
    ),
    ...said,
  ];
}

describe('chaos: PostgreSQL stops for 60 s mid-drain, default retry settings, every bus', () => {
  let postgres: OwnPostgres;
  let fake: FakePayment;
  const deployments: Deployment[] = [];
  const procs: (Proc | undefined)[] = [];

  beforeAll(async () => {
    // Slow enough that the outage lands mid-drain on every bus.
    [postgres, fake] = await Promise.all([ownPostgres(), startFakePayment({ mode: 'slow', delayMs: 100 })]);
    await postgres.createDatabase('conveyor_chaos');
    const endpoint = await sqsEndpoint();
    for (const bus of BUSES) {
      const env = withShippedRetries(
        chaosEnv({
          DATABASE_URL: postgres.url('conveyor_chaos'),
          PAYMENT_URL: fake.url,
          EVENT_BUS: bus,
          ...(bus === 'sqs' ? { SQS_ENDPOINT: endpoint } : {}),
        }),
      );
      if (bus === 'sqs') env.SQS_QUEUE_PREFIX = `chaos-${env.QUEUE_PREFIX!}`;
      deployments.push({ bus, env, db: openDb(env), accepted: [] });
    }
  }, 120_000);

  afterAll(async () => {
    await Promise.all(deployments.map((d) => teardown(d.env, [d.api, d.workers, d.projections])));
    await Promise.all(deployments.map((d) => d.db.end()));
    await fake?.close();
    await postgres?.destroy();
  }, 120_000);

  it('costs no attempt: nothing dead-lettered or stranded, read models and /v1/stats agree exactly', async () => {
    // Every process at once: each migrates its schema itself as it starts, serialized on an advisory
    // lock (shared/db/migrate.ts), so none needs another to be up first. Each is kept as soon as it is
    // up, so afterAll stops it even when another one fails to start.
    await Promise.all(
      deployments.flatMap((d) => [
        startApi(d.env, procs).then((p) => (d.api = p)),
        startWorkers(d.env, 'orders,refunds,outbox', {}, procs).then((p) => (d.workers = p)),
        startWorkers(d.env, 'projections', {}, procs).then((p) => (d.projections = p)),
      ]),
    );
    await Promise.all(
      deployments.map(async (d) => {
        d.accepted = await placeBatch(d.api!.url, makeOrders(ORDERS_PER_BUS, `pg-${d.bus}`), RETRY_503);
      }),
    );
    await eventually(
      async () =>
        (
          await Promise.all(
            deployments.map(async (d) => (await d.db.query('SELECT 1 FROM order_view LIMIT 50')).rowCount),
          )
        ).every((n) => n === 50),
      { what: 'projections under way on every bus', timeoutMs: 90_000 },
    );
    // The outage must meet events in every bus, not only orders (a fast projector would otherwise
    // have drained them): the projection workers are frozen while the relays publish a backlog, then
    // thawed while PostgreSQL is down — exactly the events that used to be lost.
    for (const d of deployments) d.projections!.child.kill('SIGSTOP');
    // 300 on every bus — or, where the projector had got further before it froze (a loaded machine
    // runs the test's own polls late), whatever backlog the first wave leaves once it is all decided
    // and published. The last readings explain a timeout.
    let backlogs: Record<string, string> = {};
    await eventually(
      async () => {
        const readings = await Promise.all(
          deployments.map(async (d) => {
            const { rows } = await d.db.query<{ backlog: number; decided: number; unpublished: number }>(
              `SELECT (SELECT count(*) FROM outbox WHERE published_at IS NOT NULL)
                    - (SELECT count(*) FROM order_view) AS backlog,
                      (SELECT count(*) FROM orders) AS decided,
                      (SELECT count(*) FROM outbox WHERE published_at IS NULL) AS unpublished`,
            );
            const r = rows[0]!;
            const [backlog, decided, unpublished] = [
              Number(r.backlog),
              Number(r.decided),
              Number(r.unpublished),
            ];
            return {
              bus: d.bus,
              backlog,
              decided,
              unpublished,
              final: decided >= d.accepted.length && unpublished === 0,
            };
          }),
        );
        backlogs = Object.fromEntries(
          readings.map((r) => [
            r.bus,
            `backlog ${r.backlog}, decided ${r.decided}, unpublished ${r.unpublished}`,
          ]),
        );
        return readings.every((r) => r.backlog >= 300 || (r.final && r.backlog > 0));
      },
      { what: 'a backlog of published, unprojected events on every bus', timeoutMs: 90_000 },
    ).catch((err: Error) => {
      throw new Error(`${err.message}: ${JSON.stringify(backlogs)}`, { cause: err });
    });

    // And orders mid-drain: a second wave accepted just before the stop (the API needs no PostgreSQL).
    await Promise.all(
      deployments.map(async (d) => {
        d.accepted.push(
          ...(await placeBatch(d.api!.url, makeOrders(ORDERS_PER_BUS, `pg2-${d.bus}`), RETRY_503)),
        );
      }),
    );
    await postgres.stop('fast');
    const stoppedAt = Date.now();
    for (const d of deployments) d.projections!.child.kill('SIGCONT');
    const probes = await Promise.all(deployments.map((d) => countOrders(d.db).catch(() => -1)));
    expect(probes.every((n) => n === -1)).toBe(true); // really down
    await eventually(() => Date.now() - stoppedAt >= OUTAGE_MS, {
      what: 'the 60 s outage to pass',
      timeoutMs: OUTAGE_MS + 5_000,
      intervalMs: 1_000,
    });
    await postgres.start();

    const reports = await Promise.all(
      deployments.map((d) =>
        awaitReconciled(d.db, d.accepted, {
          explainWith: [d.api, d.workers, d.projections],
          timeoutMs: 150_000,
        }).catch((err: Error) => err),
      ),
    );
    // Every bus is judged, and every problem reported (soft), before the test ends.
    for (const [i, d] of deployments.entries()) {
      const report = reports[i]!;
      if (report instanceof Error) {
        expect.soft(report.message, `${d.bus}: read models reconcile with the write model`).toBe('');
      } else {
        // Nothing was the orders' or the events' fault: the outage dead-lettered nothing. When something
        // was, the failure says why (each dead letter's recorded error, and the processes' own words).
        const why = report.deadLetters > 0 ? await deadLetterReasons(d) : [];
        expect
          .soft({ dead_lettered: report.byStatus.dead_lettered, deadLetters: report.deadLetters, why }, d.bus)
          .toEqual({ dead_lettered: 0, deadLetters: 0, why: [] });
        expect.soft(report.byStatus.completed + report.byStatus.rejected, d.bus).toBe(2 * ORDERS_PER_BUS);
      }
      // No work where no operator looks.
      const stranded = await strandedWork(d);
      expect
        .soft(
          Object.entries(stranded).filter(([, n]) => n > 0),
          `${d.bus}: stranded work`,
        )
        .toEqual([]);
      // What a producer reads agrees with the write model, currency by currency.
      const stats = await request<{
        totals?: { currency: string; completedCount: number; rejectedCount: number; revenueCents: number }[];
      }>(`${d.api!.url}/v1/stats?days=30`, {});
      expect.soft(stats.status, `${d.bus}: /v1/stats`).toBe(200);
      const { rows } = await d.db.query<{ currency: string; c: number; r: number; rev: number }>(
        `SELECT currency, count(*) FILTER (WHERE status = 'completed')::int AS c,
                  count(*) FILTER (WHERE status = 'rejected')::int AS r,
                  coalesce(sum(total_cents) FILTER (WHERE status = 'completed'), 0)::float8 AS rev
             FROM orders GROUP BY currency ORDER BY currency`,
      );
      const fromApi = (stats.body.totals ?? [])
        .map((t) => ({ currency: t.currency, c: t.completedCount, r: t.rejectedCount, rev: t.revenueCents }))
        .sort((a, b) => a.currency.localeCompare(b.currency));
      expect.soft(fromApi, `${d.bus}: /v1/stats totals`).toEqual(rows);
      // The same processes rode it out, snoozing instead of spending attempts.
      expect
        .soft(
          [d.api, d.workers, d.projections].map((p) => [p!.child.exitCode, p!.child.signalCode]),
          `${d.bus}: processes alive`,
        )
        .toEqual([
          [null, null],
          [null, null],
          [null, null],
        ]);
      const snoozed = [d.workers!, d.projections!].flatMap((p) =>
        linesWith(p, 'delivery snoozed; no attempt consumed'),
      );
      expect.soft(snoozed.length, `${d.bus}: deliveries snoozed through the outage`).toBeGreaterThan(0);
    }
  }, 600_000);
});
