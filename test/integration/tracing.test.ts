import { randomBytes } from 'node:crypto';
import { Writable } from 'node:stream';
import { context, ROOT_CONTEXT, trace } from '@opentelemetry/api';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EventHeaders } from '../../shared/bus/codec.ts';
import { createEventBus } from '../../shared/bus/create-bus.ts';
import type { BusKind, EventBus, Subscription } from '../../shared/bus/event-bus.ts';
import type { Config } from '../../shared/config/config.ts';
import type { Pool } from '../../shared/db/pool.ts';
import { createPgDeadLetterSink } from '../../shared/dead-letters/dead-letter.ts';
import { createDeadLetterStore } from '../../shared/dead-letters/store.ts';
import { PoisonMessageError } from '../../shared/errors/domain.ts';
import { createLogger } from '../../shared/observability/logger.ts';
import { startTracing, type Tracing } from '../../shared/observability/tracing/sdk.ts';
import { inMessageSpan } from '../../shared/observability/tracing/spans.ts';
import { injectCarrier, withCarrier } from '../../shared/observability/tracing/trace-context.ts';
import { placedEvent } from '../contract/contract-events.ts';
import { releaseSqsEndpoint, sqsEndpoint } from '../support/elasticmq-server.ts';
import { dropSchema, eventually, migratedPool, testConfig, testLogger } from '../support/env.ts';
import { request, sampleOrder } from '../support/http.ts';
import { cleanup, startPlatform } from '../support/platform.ts';
import { ownZipkin, type OwnZipkin, type ZipkinSpan } from '../support/zipkin-server.ts';

// One trace per order, read back from a real Zipkin: HTTP request → enqueue → command job (and its
// PostgreSQL write) → outbox → relay publish → bus message → projection, on every bus.

let zipkin: OwnZipkin;
let tracing: Tracing;
let sqs: string;

function busEnv(kind: BusKind): Record<string, string> {
  return {
    EVENT_BUS: kind,
    OTEL_TRACES_EXPORTER: 'zipkin',
    OTEL_EXPORTER_ZIPKIN_ENDPOINT: zipkin.spansEndpoint,
    ...(kind === 'sqs' ? { SQS_ENDPOINT: sqs, SQS_WAIT_TIME_SECONDS: '1' } : {}),
    ...(kind === 'kafka' ? { KAFKA_BROKERS: process.env.KAFKA_BROKERS ?? '127.0.0.1:9092' } : {}),
  };
}

const hex = (bytes: number) => randomBytes(bytes).toString('hex');

/** Waits until Zipkin holds a trace with spans matching every `want` (spans arrive in export batches). */
async function traceWith(traceId: string, want: ((s: ZipkinSpan[]) => boolean)[], what: string) {
  let last: ZipkinSpan[] = [];
  return eventually(
    async () => {
      const spans = await zipkin.trace(traceId);
      last = spans;
      return want.every((w) => w(spans)) ? spans : undefined;
    },
    { timeoutMs: 30_000, intervalMs: 200, what },
  ).catch((err: Error) => {
    const seen = last.map((s) => `${s.name} (${s.kind ?? 'INTERNAL'}) ${s.id} <- ${s.parentId ?? '-'}`);
    throw new Error(`${err.message}; the trace holds:\n  ${seen.join('\n  ')}`);
  });
}

const named = (spans: ZipkinSpan[], name: string, kind?: ZipkinSpan['kind']) =>
  spans.filter((s) => s.name === name && s.kind === kind);
const one = (spans: ZipkinSpan[], name: string, kind?: ZipkinSpan['kind']): ZipkinSpan => {
  const found = named(spans, name, kind);
  expect(
    found,
    `one span "${name}" (${kind ?? 'internal'}) in ${JSON.stringify(spans.map((s) => s.name))}`,
  ).toHaveLength(1);
  return found[0]!;
};

beforeAll(async () => {
  zipkin = await ownZipkin();
  sqs = await sqsEndpoint();
  const { tracing: settings } = testConfig(busEnv('bullmq'));
  tracing = await startTracing({ ...settings, batch: { ...settings.batch, scheduledDelayMillis: 50 } });
}, 180_000);

afterAll(async () => {
  await tracing?.shutdown();
  await zipkin?.destroy();
  await releaseSqsEndpoint();
});

describe.each<BusKind>(['bullmq', 'rabbitmq', 'sqs', 'kafka'])('one trace per order on %s', (kind) => {
  it('links POST, enqueue, command job, outbox publish and projection in one trace', async () => {
    const platform = await startPlatform(testConfig(busEnv(kind)));
    try {
      const traceId = hex(16);
      const callerSpanId = hex(8);
      const res = await request(`${platform.url}/v1/orders`, {
        method: 'POST',
        json: sampleOrder({ customerId: `c-trace-${kind}` }),
        headers: { traceparent: `00-${traceId}-${callerSpanId}-01` },
      });
      expect(res.status).toBe(202);
      const orderId = res.body.orderId as string;

      const spans = await traceWith(
        traceId,
        [
          (s) => named(s, 'project projections').length > 0,
          (s) => named(s, 'post /v1/orders', 'SERVER').length > 0,
        ],
        `the ${kind} trace of order ${orderId} up to its projection`,
      );
      const server = one(spans, 'post /v1/orders', 'SERVER');
      expect(server.parentId).toBe(callerSpanId); // the incoming traceparent is honoured
      const send = one(spans, 'send orders', 'PRODUCER');
      expect(send.parentId).toBe(server.id);
      expect(send.tags?.['messaging.message.id']).toBe(orderId);
      const job = one(spans, 'process orders', 'CONSUMER');
      expect(job.parentId).toBe(send.id);
      const write = one(spans, 'write orders');
      expect(write.parentId).toBe(job.id);
      const publish = one(spans, 'publish events', 'PRODUCER');
      expect(publish.parentId).toBe(job.id); // from the outbox row's trace_context
      expect(publish.tags?.['messaging.system']).toBe(kind);
      const consume = one(spans, 'process projections', 'CONSUMER');
      expect(consume.parentId).toBe(publish.id); // from the message's traceparent header
      expect(consume.tags?.['messaging.system']).toBe(kind);
      const project = one(spans, 'project projections');
      expect(project.parentId).toBe(consume.id);

      const [row] = (
        await platform.rt.pool.query<{ trace_context: { traceparent: string } }>(
          `SELECT trace_context FROM outbox WHERE aggregate_id = $1`,
          [orderId],
        )
      ).rows;
      expect(row?.trace_context.traceparent).toBe(`00-${traceId}-${job.id}-01`);
    } finally {
      await platform.close();
    }
  }, 90_000);

  it('keeps an event in its trace through a retry and a redrive', async () => {
    const config: Config = testConfig(busEnv(kind));
    const pool: Pool = await migratedPool(config);
    let bus: EventBus | undefined;
    let sub: Subscription | undefined;
    try {
      bus = await createEventBus(
        kind,
        { logger: testLogger(), deadLetters: createPgDeadLetterSink(pool) },
        config,
      );
      await bus.start();
      let deliveries = 0;
      sub = await bus.subscribe('projections', (event, delivery) =>
        inMessageSpan(
          {
            operation: 'process',
            kind: 'consumer',
            system: delivery.transport,
            destination: 'projections',
            messageId: event.eventId,
            parent: delivery.trace ?? ROOT_CONTEXT,
          },
          async () => {
            deliveries += 1;
            if (deliveries === 1) throw new Error('downstream is down: retried');
            if (deliveries === 2) throw new PoisonMessageError('poison: dead-lettered');
          },
        ),
      );
      const event = placedEvent();
      const root = trace.getTracer('test').startSpan('order under test', {}, ROOT_CONTEXT);
      const { traceId, spanId } = root.spanContext();
      await bus.publish([withCarrier(event, injectCarrier(trace.setSpan(context.active(), root)))]);
      root.end();

      const store = createDeadLetterStore(pool);
      const dl = await eventually(
        async () =>
          (await store.list({ limit: 100 })).find((d) => d.headers[EventHeaders.eventId] === event.eventId),
        { what: `the dead letter of ${event.eventId}` },
      );
      expect(dl.headers['traceparent']).toContain(traceId);
      await bus.redrive(dl);
      await eventually(() => deliveries >= 3, { what: 'the redriven delivery' });

      const spans = await traceWith(
        traceId,
        [(s) => named(s, 'process projections', 'CONSUMER').length >= 3],
        `three deliveries of one event in one ${kind} trace`,
      );
      const consumers = named(spans, 'process projections', 'CONSUMER');
      expect(consumers.map((s) => s.parentId)).toEqual([spanId, spanId, spanId]);
    } finally {
      await sub?.close();
      await bus?.close();
      await dropSchema(pool, config.database.schema);
      await pool.end();
      await cleanup(config);
    }
  }, 90_000);
});

describe('log lines', () => {
  it('carry trace_id and span_id inside a span, beside the correlation id', async () => {
    const lines: string[] = [];
    const sink = new Writable({
      write(chunk: Buffer, _enc, done) {
        lines.push(chunk.toString('utf8'));
        done();
      },
    });
    const logger = createLogger({ level: 'info', service: 'test', destination: sink, traceIds: true });
    const span = trace.getTracer('test').startSpan('logged');
    context.with(trace.setSpan(ROOT_CONTEXT, span), () => logger.info({ correlationId: 'corr-1' }, 'inside'));
    logger.info('outside');
    span.end();
    const [inside, outside] = lines.map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(inside).toMatchObject({
      correlationId: 'corr-1',
      trace_id: span.spanContext().traceId,
      span_id: span.spanContext().spanId,
    });
    expect(outside).not.toHaveProperty('trace_id');
  });
});
