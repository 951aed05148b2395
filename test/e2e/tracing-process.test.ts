import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../shared/config/config.ts';
import { eventually, isolatedEnv } from '../support/env.ts';
import { request, sampleOrder } from '../support/http.ts';
import { cleanup } from '../support/platform.ts';
import { logRecords, startServer, TRACING_REGISTER, type Proc } from '../support/processes.ts';
import { ownZipkin, type OwnZipkin, type ZipkinSpan } from '../support/zipkin-server.ts';

// What `OTEL_TRACES_EXPORTER=zipkin npm start` does: the all-in-one process started as the npm scripts
// start it (node --import tsx --import the tracing register), one order, its whole trace in Zipkin —
// with the maintained PostgreSQL instrumentation's spans, which need the register's module hooks.

let zipkin: OwnZipkin;
let proc: (Proc & { url: string }) | undefined;
let env: Record<string, string>;

beforeAll(async () => {
  zipkin = await ownZipkin();
  env = isolatedEnv({
    OTEL_TRACES_EXPORTER: 'zipkin',
    OTEL_EXPORTER_ZIPKIN_ENDPOINT: zipkin.spansEndpoint,
    OTEL_SERVICE_NAME: 'conveyor-e2e',
    OTEL_BSP_SCHEDULE_DELAY: '100',
    REDIS_REQUIRE_NOEVICTION: 'false',
    REDIS_REQUIRE_AOF: 'false',
  });
  proc = await startServer('main.ts', env, 60_000, [TRACING_REGISTER]);
});

afterAll(async () => {
  await proc?.kill();
  await zipkin?.destroy();
  await cleanup(loadConfig(env));
});

describe('tracing in a real process', () => {
  it('shows one order from POST to projection in Zipkin, PostgreSQL spans and log trace ids included', async () => {
    const traceId = randomBytes(16).toString('hex');
    const res = await request(`${proc!.url}/v1/orders`, {
      method: 'POST',
      json: sampleOrder({ customerId: 'c-e2e-trace' }),
      headers: {
        traceparent: `00-${traceId}-${randomBytes(8).toString('hex')}-01`,
        'x-correlation-id': 'corr-e2e-trace',
      },
    });
    expect(res.status).toBe(202);
    const spans = await eventually(
      async () => {
        const s = await zipkin.trace(traceId);
        return s.some((x) => x.name === 'project projections') ? s : undefined;
      },
      { timeoutMs: 30_000, intervalMs: 200, what: 'the order trace up to its projection' },
    );
    const byId = new Map(spans.map((s) => [s.id, s]));
    const write = spans.find((s) => s.name === 'write orders')!;
    const project = spans.find((s) => s.name === 'project projections')!;
    const pgUnder = (parent: ZipkinSpan) =>
      spans.filter(
        (s) => s.parentId === parent.id && s.tags?.['db.system.name'] === 'postgresql' && s.kind === 'CLIENT',
      );
    expect(pgUnder(write).length).toBeGreaterThan(0); // the order's INSERT … outbox CTE
    expect(pgUnder(project).length).toBeGreaterThan(0); // the projection's transaction
    const send = spans.find((s) => s.name === 'send orders')!;
    // The enqueue's Redis command, from the maintained ioredis instrumentation.
    expect(
      spans.some(
        (s) => s.parentId === send.id && s.kind === 'CLIENT' && s.tags?.['db.system.name'] === 'redis',
      ),
    ).toBe(true);
    expect(new Set(spans.map((s) => s.localEndpoint?.serviceName))).toEqual(new Set(['conveyor-e2e']));
    // Every span hangs off the caller's: one tree.
    for (const s of spans) if (s.name !== 'post /v1/orders') expect(byId.has(s.parentId ?? '')).toBe(true);

    const lines = logRecords(proc!).filter((l) => l['correlationId'] === 'corr-e2e-trace');
    const processed = lines.find((l) => l['msg'] === 'command processed');
    const projected = lines.find((l) => l['msg'] === 'event projected');
    expect(processed).toMatchObject({ trace_id: traceId });
    expect(projected).toMatchObject({ trace_id: traceId });
    expect(spans.map((s) => s.id)).toContain(processed!['span_id']);
  });
});
