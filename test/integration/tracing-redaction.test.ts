import { randomBytes } from 'node:crypto';
import { createRequire } from 'node:module';
import { context, ROOT_CONTEXT, trace } from '@opentelemetry/api';
import { InMemorySpanExporter, type ReadableSpan } from '@opentelemetry/sdk-trace-node';
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createPool, type Pool } from '../../shared/db/pool.ts';
import { redactedUrl, redisKeyPrefix, redisStatement } from '../../shared/observability/tracing/redact.ts';
import { startTracing, type Tracing } from '../../shared/observability/tracing/sdk.ts';
import { testConfig, uniqueId } from '../support/env.ts';

// Spans carry no secret and no payload: what the maintained ioredis and pg instrumentations export, in
// process, against the real Redis and PostgreSQL, read from an in-memory exporter.

describe('redisStatement: the command and its key prefix, never an argument', () => {
  it.each([
    ['get', ['conveyor:session:Zm9vYmFyYmF6cXV4cXV1eDEyMzQ1Njc4OTA'], 'get conveyor:session:*'],
    ['set', ['conveyor:session:abc', '{"principal":"shop"}', 'EX', 60], 'set conveyor:session:*'],
    [
      'del',
      ['conveyor:idem:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08'],
      'del conveyor:idem:*',
    ],
    ['hgetall', ['bull:orders:6a0f2b4e-9d1c-4e2f-8a3b-1c2d3e4f5a6b'], 'hgetall bull:orders:*'],
    ['exists', ['bull:orders:6a0f2b4e-9d1c-4e2f-8a3b-1c2d3e4f5a6b:lock'], 'exists bull:orders:*'],
    ['llen', ['{conveyor:orders}:orders:wait'], 'llen {conveyor:orders}:orders:*'],
    ['incr', ['conveyor:ratelimit:writes:shop'], 'incr conveyor:ratelimit:writes:*'],
    [
      'evalsha',
      ['d1e2f3', '2', 'bull:orders:wait', 'bull:orders:id', '{"customerId":"c-1"}'],
      'evalsha bull:orders:*',
    ],
    ['eval', ['return redis.call("get", KEYS[1])', 0, 'secret-arg'], 'eval'],
    ['auth', ['default', 'hunter2'], 'auth'],
    ['hello', ['3', 'AUTH', 'default', 'hunter2'], 'hello'],
    ['client', ['setname', 'conveyor-api'], 'client'],
    ['get', ['plainkey'], 'get *'],
    ['get', [Buffer.from('conveyor:session:xyz')], 'get conveyor:session:*'],
  ] as const)('%s %j → %s', (command, args, expected) => {
    expect(redisStatement(command, args)).toBe(expected);
  });

  it('stops a key prefix at the first segment that names one thing', () => {
    expect(redisKeyPrefix('bull:orders:123:logs')).toBe('bull:orders:*');
    expect(redisKeyPrefix('cv_mb1x2y3zab12cd:session:x')).toBe('cv_mb1x2y3zab12cd:session:*');
  });

  it('turns a server span URL into its route, without the query or credentials', () => {
    expect(
      redactedUrl(
        'http://u:p@127.0.0.1:8080/v1/customers/c-42/orders?cursor=x',
        '/v1/customers/:customerId/orders',
      ),
    ).toBe('http://127.0.0.1:8080/v1/customers/:customerId/orders');
    expect(redactedUrl('http://127.0.0.1:8080/nope/c-42', '/*')).toBe('http://127.0.0.1:8080');
  });
});

describe('exported spans of Redis and PostgreSQL commands', () => {
  const exporter = new InMemorySpanExporter();
  const config = testConfig();
  let tracing: Tracing;
  let redis: Redis;
  let pool: Pool;
  let queue: Queue;

  beforeAll(async () => {
    tracing = await startTracing(
      { ...config.tracing, enabled: true, batch: { ...config.tracing.batch, scheduledDelayMillis: 10 } },
      { exporter },
    );
    // The modules were loaded (by the imports above) before the instrumentations: a require through
    // the hook patches their prototypes, which every client shares.
    const require = createRequire(import.meta.url);
    require('ioredis');
    require('pg');
    redis = new Redis(config.redis.url, { maxRetriesPerRequest: null });
    pool = createPool({ ...config.database, poolMax: 2 });
    queue = new Queue('orders', { connection: redis, prefix: config.redis.queuePrefix });
  });

  afterAll(async () => {
    await queue?.obliterate({ force: true }).catch(() => undefined);
    await queue?.close();
    redis?.disconnect();
    await pool?.end();
    await tracing?.shutdown();
  });

  it('name the command and key prefix: no session id, job payload or query parameter', async () => {
    const customerId = `c-secret-${randomBytes(6).toString('hex')}`;
    const sku = `sku-secret-${randomBytes(6).toString('hex')}`;
    // A session's write and lookup as the API's store does them: the id is the key's last segment.
    const sessionId = randomBytes(32).toString('base64url');
    const sessionKey = `${config.redis.queuePrefix}:session:${sessionId}`;
    const root = trace.getTracer('test').startSpan('request under test', {}, ROOT_CONTEXT);
    await context.with(trace.setSpan(ROOT_CONTEXT, root), async () => {
      await redis.set(sessionKey, JSON.stringify({ principal: 'shop' }), 'EX', 60);
      expect(await redis.get(sessionKey)).not.toBeNull();
      await queue.add('order', { customerId, items: [{ sku, quantity: 1 }] }, { jobId: uniqueId('order') });
      await pool.query('SELECT $1::text AS customer, $2::text AS sku', [customerId, sku]);
    });
    root.end();
    await tracing.forceFlush();
    const spans: ReadableSpan[] = exporter.getFinishedSpans();

    const secrets = [sessionId, customerId, sku, '"items":'];
    const leaks = spans.flatMap((s) =>
      Object.entries({ name: s.name, ...s.attributes })
        .map(([k, v]) => [k, JSON.stringify(v)] as const)
        .filter(([, v]) =>
          secrets.some((secret) => v.includes(secret.replaceAll('"', '\\"')) || v.includes(secret)),
        )
        .map(([k, v]) => `${s.name}: ${k} = ${v.slice(0, 300)}`),
    );
    expect(leaks).toEqual([]);

    const statements = spans
      .filter((s) => s.attributes['db.system.name'] === 'redis')
      .map((s) => String(s.attributes['db.query.text']));
    expect(statements).toContain(`get ${config.redis.queuePrefix}:session:*`);
    expect(statements).toContainEqual(expect.stringMatching(/^evalsha /));
    const sql = spans.filter((s) => s.attributes['db.system.name'] === 'postgresql');
    expect(sql.map((s) => s.attributes['db.query.text'])).toContain(
      'SELECT $1::text AS customer, $2::text AS sku',
    );
  });
});
