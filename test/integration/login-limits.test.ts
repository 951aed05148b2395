import { request as httpRequest, type IncomingHttpHeaders } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLoginFailures } from '../../dashboard/auth/login-failures.ts';
import { startDashboard } from '../../dashboard/server.ts';
import { loadConfig } from '../../shared/config/config.ts';
import { isolatedEnv } from '../support/env.ts';
import { startPlatform, type Platform } from '../support/platform.ts';
import { MODULES } from '../../modules/registry.ts';

// Body limits on what needs no key (the console's login, the API's probes and scrapes) and a login
// limiter that does not write an audit row per refused attempt: over HTTP, real Redis and Postgres.
const config = loadConfig(
  isolatedEnv({
    DASHBOARD_USER: 'root',
    DASHBOARD_PASSWORD: 'correct horse battery staple',
    DASHBOARD_VIEWER_USER: 'watcher',
    DASHBOARD_VIEWER_PASSWORD: 'viewer pass',
  }),
  { modules: MODULES },
);
let platform: Platform;
let console_: string;

interface Res {
  status: number;
  headers: IncomingHttpHeaders;
  text: string;
}

/**
 * POSTs `body` as it is, framed by Content-Length. node:http rather than fetch: a server that answers
 * 413 and closes before reading a large body may cut the upload, and the answer is what counts.
 */
function post(url: string, body: string, headers: Record<string, string> = {}): Promise<Res> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(
      url,
      { method: 'POST', headers: { ...headers, 'content-length': String(Buffer.byteLength(body)) } },
      (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => (text += chunk));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, text }));
        res.on('error', reject);
      },
    );
    req.on('error', reject); // after a response, a cut upload no longer matters (the promise is settled)
    req.end(body);
  });
}

const loginForm = (fields: Record<string, string>) =>
  post(`${console_}/dashboard/login`, new URLSearchParams(fields).toString(), {
    'content-type': 'application/x-www-form-urlencoded',
    origin: console_,
  });

/** Failed logins audited for this client (the test's address), of one actor if named. */
const failedLogins = async (actor?: string) =>
  (
    await platform.rt.pool.query<{ actor: string; detail: Record<string, unknown> }>(
      `SELECT actor, detail FROM audit_log
        WHERE action = 'login.failed' AND ip = '127.0.0.1' AND ($1::text IS NULL OR actor = $1)
        ORDER BY id`,
      [actor ?? null],
    )
  ).rows;

beforeAll(async () => {
  platform = await startPlatform(config, { workers: [] });
  const dashboard = await startDashboard(platform.rt);
  console_ = `http://127.0.0.1:${dashboard.port}`;
});
afterAll(async () => {
  await platform?.close();
});

describe('body limits on routes without a key', () => {
  it('answers a 1 MB login form 413 with the console page, without parsing it', async () => {
    const body = `username=intruder&password=wrong&pad=${'x'.repeat(1_048_576)}`;
    const res = await post(`${console_}/dashboard/login`, body, {
      'content-type': 'application/x-www-form-urlencoded',
      origin: console_,
    });
    expect(res.status).toBe(413);
    expect(res.headers['content-type']).toContain('text/html');
    expect(res.text).toContain('The form is too large.');
    expect(res.headers.connection).toBe('close');
    // Never parsed: the handler would have counted an attempt and audited a failure.
    expect(await failedLogins()).toEqual([]);
    const redis = platform.rt.redis;
    expect(await redis.keys(`${config.redis.queuePrefix}:dashboard:login*`)).toEqual([]);
  });

  it('counts a chunked login form as it arrives and refuses it past the limit', async () => {
    const chunks = new ReadableStream({
      start(controller) {
        controller.enqueue(new TextEncoder().encode('username=intruder&password=wrong&pad='));
        for (let i = 0; i < 64; i++) controller.enqueue(new TextEncoder().encode('x'.repeat(1_024)));
        controller.close();
      },
    });
    const res = await fetch(`${console_}/dashboard/login`, {
      method: 'POST',
      body: chunks,
      headers: { 'content-type': 'application/x-www-form-urlencoded', origin: console_ },
      duplex: 'half',
    } as RequestInit);
    expect(res.status).toBe(413);
    expect(await failedLogins()).toEqual([]);
  });

  it('still signs in with a form of ordinary size', async () => {
    const res = await loginForm({ username: 'watcher', password: 'viewer pass' });
    expect(res.status).toBe(303);
  });

  it('refuses a body on the API outside /v1 (probes, metrics, OpenAPI) past a small limit', async () => {
    for (const path of ['/healthz', '/readyz', '/metrics', '/openapi.json']) {
      const res = await post(`${platform.url}${path}`, 'x'.repeat(1_048_576), {
        'content-type': 'application/json',
      });
      expect(res.status, path).toBe(413);
      expect(res.headers['content-type']).toContain('application/problem+json');
      expect(JSON.parse(res.text)).toMatchObject({ code: 'request.too_large', limitBytes: 1_024 });
    }
    // Under /v1 the key is checked first: nothing is read for a caller without one.
    const anonymous = await post(`${platform.url}/v1/orders`, 'x'.repeat(1_048_576), {
      'content-type': 'application/json',
      authorization: 'Bearer not-a-key',
    });
    expect(anonymous.status).toBe(401);
    // The core's keyed routes that take a body have the API's limit too (1 MiB by default).
    for (const path of ['/v1/dead-letters/redrive', '/v1/sessions']) {
      const res = await post(`${platform.url}${path}`, `{"pad":"${'x'.repeat(1_100_000)}"}`, {
        'content-type': 'application/json',
        authorization: 'Bearer dev',
      });
      expect(res.status, path).toBe(413);
      expect(JSON.parse(res.text)).toMatchObject({ code: 'request.too_large', limitBytes: 1_048_576 });
    }
  });
});

describe('a client hammering the login', () => {
  it('is refused with 429 and Retry-After, and audited as its first failure and one summary', async () => {
    const statuses: number[] = [];
    let last: Res | undefined;
    for (let i = 0; i < 200; i++) {
      last = await loginForm({ username: 'root', password: `guess-${i}` });
      statuses.push(last.status);
    }
    expect(statuses.filter((s) => s === 401)).toHaveLength(10); // 10 attempts a minute per IP and user
    expect(statuses.filter((s) => s === 429)).toHaveLength(190);
    expect(Number(last!.headers['retry-after'])).toBeGreaterThan(0);
    // While the streak lasts, only its first failure is in the audit log.
    expect(await failedLogins('root')).toEqual([{ actor: 'root', detail: { reason: 'bad_credentials' } }]);

    // A success from the same address ends the streak: its summary counts every refused attempt.
    expect((await loginForm({ username: 'watcher', password: 'viewer pass' })).status).toBe(303);
    const rows = await failedLogins('root');
    expect(rows.length).toBeLessThanOrEqual(2);
    expect(await failedLogins()).toHaveLength(rows.length); // nothing else from this address either
    expect(rows[1]).toMatchObject({
      actor: 'root',
      detail: { reason: 'repeated', count: 200, badCredentials: 10, rateLimited: 190, users: { root: 200 } },
    });
  });

  it('ends a streak at the first failure after its window, handing back its counts once', async () => {
    const prefix = `${config.redis.queuePrefix}:streaks`;
    const redis = platform.rt.redis;
    const long = createLoginFailures(redis, { prefix, windowSeconds: 3_600, retainSeconds: 60 });
    // The same store seen by a replica whose window is over (a window of 0: every streak has ended).
    const over = createLoginFailures(redis, { prefix, windowSeconds: 0, retainSeconds: 60 });
    expect(await long.fail('10.0.0.1', 'a', 'bad_credentials')).toEqual({ first: true, ended: null });
    expect(await long.fail('10.0.0.1', 'B', 'rate_limited')).toEqual({ first: false, ended: null });
    for (let i = 0; i < 12; i++) await long.fail('10.0.0.1', `user-${i}`, 'bad_credentials');
    const next = await over.fail('10.0.0.1', 'c', 'bad_credentials');
    expect(next.first).toBe(true);
    expect(next.ended).toMatchObject({
      count: 14,
      badCredentials: 13,
      rateLimited: 1,
      firstUser: 'a',
      otherUsers: 4, // ten user names are counted one by one, the rest together
    });
    expect(Object.keys(next.ended!.users)).toHaveLength(10);
    expect(next.ended!.users).toMatchObject({ a: 1, b: 1 });
    // The new streak (one failure) is what a success ends.
    expect(await long.end('10.0.0.1')).toMatchObject({ count: 1, firstUser: 'c' });
    expect(await long.end('10.0.0.1')).toBeNull();
  });
});
