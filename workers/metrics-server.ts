import { serve } from '@hono/node-server';
import { Hono } from 'hono';
import type { AddressInfo } from 'node:net';
import type { Config } from '../shared/config/config.ts';
import type { Pool } from '../shared/db/pool.ts';
import type { Logger } from '../shared/observability/logger.ts';
import type { Metrics } from '../shared/observability/metrics.ts';
import type { QueueModules } from '../shared/queue/names.ts';
import type { Redis } from '../shared/queue/redis.ts';
import { outboxBacklog } from './outbox/relay.sql.ts';
import type { WorkerKind } from './start.ts';
import type { Failure } from '../shared/runtime/lifecycle.ts';
import { liveness, probe } from '../shared/runtime/probe.ts';
import { sqsGroupQueues } from '../shared/bus/sqs/bus.ts';

export interface MetricsServerOptions {
  metrics: Metrics;
  pool: Pool;
  redis: Redis;
  logger: Logger;
  /** `METRICS_PORT`; 0 picks a free port (tests). */
  port: number;
  host: string;
  /** Bound on each readiness probe. */
  probeTimeoutMs: number;
  /** The process's failure, if a component can no longer work (the lifecycle's `failure`). */
  failure?: () => Failure | undefined;
}

export interface MetricsServer {
  port: number;
  close(): Promise<void>;
}

/**
 * The operators' port of a worker process (which has no API): `/metrics` for Prometheus, `/healthz`
 * (alive: the event loop answers and no component failed for good, else 503 naming it) for the
 * liveness probe and `/readyz` (Redis and Postgres answer) for the readiness probe. Not used in the all-in-one `main.ts`, where the API serves `/metrics`.
 * @example const server = await startMetricsServer({ metrics, pool, redis, logger, port: 9464, host: '0.0.0.0', probeTimeoutMs: 2_000 });
 */
export async function startMetricsServer(options: MetricsServerOptions): Promise<MetricsServer> {
  const { metrics, pool, redis, probeTimeoutMs } = options;
  const app = new Hono();
  app.get('/metrics', async (c) =>
    c.body(await metrics.render(), 200, { 'content-type': metrics.contentType }),
  );
  app.get('/healthz', (c) => {
    const { status, body } = liveness(options.failure?.());
    return c.json(body, status);
  });
  app.get('/readyz', async (c) => {
    const [r, p] = await Promise.all([
      probe(() => redis.ping(), probeTimeoutMs),
      probe(() => pool.query('SELECT 1'), probeTimeoutMs),
    ]);
    const ready = r === 'ok' && p === 'ok';
    return c.json(
      { status: ready ? 'ready' : 'unavailable', checks: { redis: r, postgres: p } },
      ready ? 200 : 503,
    );
  });
  app.notFound((c) => c.json({ status: 404, title: 'Not Found' }, 404));

  const server = await new Promise<ReturnType<typeof serve>>((resolve, reject) => {
    const s = serve({ fetch: app.fetch, port: options.port, hostname: options.host }, () => resolve(s));
    // EADDRINUSE and friends: fail the start instead of crashing on an unhandled 'error'.
    s.once('error', reject);
  });
  const port = (server.address() as AddressInfo).port;
  options.logger.info({ port, host: options.host }, 'metrics server listening');

  let closing: Promise<void> | undefined;
  return {
    port,
    close: () =>
      (closing ??= new Promise<void>((resolve) => {
        server.close(() => resolve());
        // Keep-alive scrapers would hold close() open; nothing in flight here is worth waiting for.
        if ('closeAllConnections' in server) server.closeAllConnections();
      })),
  };
}

/**
 * Registers the scrape-time sources a worker process reports: BullMQ queue depths and the per-tenant
 * fairness of the command queues (the `FAIRNESS_METRICS_TOP` largest backlogs), its pool and
 * Redis connection, the outbox backlog where the relay runs, and the bus's lag where projections run
 * (Kafka consumer-group lag, RabbitMQ or SQS queue depth, by `EVENT_BUS`).
 */
export function watchWorkerSources(
  metrics: Metrics,
  deps: { config: Config; pool: Pool; redis: Redis; modules: QueueModules },
  kinds: readonly WorkerKind[],
): void {
  const { config, pool, redis } = deps;
  metrics.watchQueues({
    connection: redis,
    prefix: config.redis.queuePrefix,
    modules: deps.modules,
    tenantsTop: config.fairness.metricsTop,
  });
  metrics.watchPgPool('main', pool);
  metrics.watchRedis('main', redis);
  if (kinds.includes('outbox')) metrics.watchOutbox(() => outboxBacklog(pool));
  if (!kinds.includes('projections')) return;
  if (config.bus.kind === 'kafka') {
    const { kafka } = config.bus;
    metrics.watchKafkaLag({
      brokers: kafka.brokers,
      clientId: kafka.clientId,
      ssl: kafka.ssl,
      sasl: kafka.sasl,
      // The Kafka bus retries on `<topic>.retry` with the same group (shared/bus/kafka/bus.ts).
      topics: [kafka.topic, `${kafka.topic}.retry`],
      groups: [kafka.consumer.groupId],
    });
  } else if (config.bus.kind === 'rabbitmq') {
    const { rabbitmq } = config.bus;
    // `<queue>.dlq` is where the RabbitMQ bus dead-letters (shared/bus/rabbitmq/topology.ts).
    metrics.watchRabbitmq({ url: rabbitmq.url, queues: [rabbitmq.queue, `${rabbitmq.queue}.dlq`] });
  } else if (config.bus.kind === 'sqs') {
    const { sqs } = config.bus;
    // The projections group's queue and its DLQ, named as the SQS bus names them.
    const names = sqsGroupQueues(sqs);
    metrics.watchSqs({ endpoint: sqs.endpoint, region: sqs.region, queues: [names.queue, names.dlq] });
  }
}
