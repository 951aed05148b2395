import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../shared/config/config.ts';
import { eventually, isolatedEnv } from '../support/env.ts';
import { request, sampleOrder } from '../support/http.ts';
import { cleanup } from '../support/platform.ts';
import { generateApiKey } from '../../shared/security/api-keys.ts';
import { logRecords, startServer, TRACING_REGISTER, type Proc } from '../support/processes.ts';
import { ownZipkin, type OwnZipkin, type ZipkinSpan } from '../support/zipkin-server.ts';
import { MODULES } from '../../modules/registry.ts';

// What `OTEL_TRACES_EXPORTER=zipkin npm start` does: the all-in-one process started as the npm scripts
// start it (node --import tsx --import the tracing register), one order, its whole trace in Zipkin —
// with the maintained PostgreSQL instrumentation's spans, which need the register's module hooks.

let zipkin: OwnZipkin;
let proc: (Proc & { url: string }) | undefined;
let env: Record<string, string>;
const apiKey = generateApiKey('tracing-e2e', ['admin']);
const auth = { authorization: `Bearer ${apiKey.key}` };
const hex = (bytes: number) => randomBytes(bytes).toString('hex');
const traceparent = (traceId: string) => `00-${traceId}-${hex(8)}-01`;

/** Waits until Zipkin holds a span of `traceId` that `want` accepts; answers the whole trace. */
const traceWith = (traceId: string, want: (s: ZipkinSpan) => boolean, what: string) =>
  eventually(
    async () => {
      const spans = await zipkin.trace(traceId);
      return spans.some(want) ? spans : undefined;
    },
    { timeoutMs: 30_000, intervalMs: 200, what },
  );

beforeAll(async () => {
  zipkin = await ownZipkin();
  env = isolatedEnv({
    OTEL_TRACES_EXPORTER: 'zipkin',
    OTEL_EXPORTER_ZIPKIN_ENDPOINT: zipkin.spansEndpoint,
    OTEL_SERVICE_NAME: 'conveyor-e2e',
    OTEL_BSP_SCHEDULE_DELAY: '100',
    API_KEYS: apiKey.entry,
    REDIS_REQUIRE_NOEVICTION: 'false',
    REDIS_REQUIRE_AOF: 'false',
  });
  proc = await startServer('main.ts', env, 60_000, [TRACING_REGISTER]);
});

afterAll(async () => {
  await proc?.kill();
  await zipkin?.destroy();
  await cleanup(loadConfig(env, { modules: MODULES }));
});

describe('tracing in a real process', () => {
  it('shows one order from POST to projection in Zipkin, PostgreSQL spans and log trace ids included', async () => {
    const traceId = randomBytes(16).toString('hex');
    const res = await request(`${proc!.url}/v1/orders`, {
      method: 'POST',
      json: sampleOrder({ customerId: 'c-e2e-trace' }),
      headers: {
        ...auth,
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

  it('exports no session id, API key or order field: Redis statements keep the command and key prefix', async () => {
    const customerId = `c-secret-${hex(6)}`;
    const sku = `sku-secret-${hex(6)}`;
    const [login, post, read] = [hex(16), hex(16), hex(16)];

    const opened = await request<{ sessionId: string }>(`${proc!.url}/v1/sessions`, {
      method: 'POST',
      headers: { ...auth, traceparent: traceparent(login) },
    });
    expect(opened.status).toBe(201);
    const { sessionId } = opened.body;
    const session = { 'x-session-id': sessionId };
    const res = await request(`${proc!.url}/v1/orders`, {
      method: 'POST',
      json: sampleOrder({ customerId, items: [{ sku, quantity: 3, unitPriceCents: 4321 }] }),
      headers: { ...session, traceparent: traceparent(post) },
    });
    expect(res.status).toBe(202);
    const posted = await traceWith(
      post,
      (s) => s.name === 'project projections',
      'the order up to its projection',
    );
    const listed = await request(`${proc!.url}/v1/customers/${customerId}/orders`, {
      headers: { ...session, traceparent: traceparent(read) },
    });
    expect(listed.status).toBe(200);
    const isServer = (s: ZipkinSpan) => s.kind === 'SERVER';
    const reading = await traceWith(read, isServer, 'the customer read');
    const opening = await traceWith(login, isServer, 'the session login');
    // Everything the process exported, not only these three traces (the relay's, the pools'…).
    const all = await eventually(
      async () => {
        const q = new URLSearchParams({ serviceName: 'conveyor-e2e', limit: '10000', lookback: '3600000' });
        const r = await fetch(`${zipkin.url}/api/v2/traces?${q}`);
        return r.ok ? ((await r.json()) as ZipkinSpan[][]).flat() : undefined;
      },
      { what: 'every trace of the service' },
    );
    const spans = [...all, ...posted, ...reading, ...opening];

    // Nothing a reader of the tracing backend could use or should not see…
    const secrets = [sessionId, apiKey.key, customerId, sku, '"items":'];
    const leaks = spans.flatMap((s) =>
      Object.entries({ name: s.name ?? '', ...s.tags })
        .filter(([, v]) => secrets.some((secret) => v.includes(secret)))
        .map(([k, v]) => `${s.name}: ${k} = ${v.slice(0, 300)}`),
    );
    expect(leaks).toEqual([]);

    // …while the spans still say what ran: the session lookup, the enqueue script, the read's route.
    const statements = spans
      .filter((s) => s.tags?.['db.system.name'] === 'redis')
      .map((s) => s.tags?.['db.query.text'] ?? '');
    // The session lookup: `get <prefix>:session:*` (whatever the store makes of the id after the prefix).
    const lookup = new RegExp(`^\\w+ ${env['QUEUE_PREFIX']}:[\\w:-]*session[\\w:-]*:\\*$`);
    expect(statements).toContainEqual(expect.stringMatching(lookup));
    const send = posted.find((s) => s.name === 'send orders')!;
    const enqueue = posted.filter((s) => s.parentId === send.id && s.tags?.['db.system.name'] === 'redis');
    expect(enqueue.map((s) => s.tags?.['db.query.text'])).toContainEqual(expect.stringMatching(/^evalsha /));
    const server = reading.find(isServer)!;
    expect(server.tags?.['url.full']).toBe(`${proc!.url}/v1/customers/:customerId/orders`);
  });
});
