import { Queue } from 'bullmq';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createCredentials } from '../../dashboard/auth/credentials.ts';
import { startDashboard } from '../../dashboard/server.ts';
import { OrdersQueues } from '../../modules/orders/queue.ts';
import { loadConfig } from '../../shared/config/config.ts';
import { createPgDeadLetterSink } from '../../shared/dead-letters/dead-letter.ts';
import { allQueueNames } from '../../shared/queue/names.ts';
import { bootstrap, StartupError, type Runtime } from '../../shared/runtime/bootstrap.ts';
import { isolatedEnv, testLogger } from '../support/env.ts';
import { cleanup } from '../support/platform.ts';
import { MODULES } from '../../modules/registry.ts';

// The dashboard's access control over HTTP, against real Redis and Postgres: two replicas sharing
// sessions, roles enforced server-side, CSRF, rate-limited logins, logout, and the audit trail.
const env = isolatedEnv({
  DASHBOARD_PORT: '0',
  DASHBOARD_USER: 'root',
  DASHBOARD_PASSWORD: 'correct horse battery staple',
  DASHBOARD_VIEWER_USER: 'watcher',
  DASHBOARD_VIEWER_PASSWORD: 'viewer pass',
  SESSION_TTL_SECONDS: '600',
});
const config = loadConfig(env, { modules: MODULES });
const runtimes: Runtime[] = [];
let a: string; // replica A
let b: string; // replica B
let orders: Queue;

interface Res {
  status: number;
  location: string | null;
  cookies: string[];
  text: string;
  headers: Headers;
}

async function call(
  url: string,
  init: { method?: string; cookie?: string; form?: Record<string, string>; origin?: string | null } = {},
): Promise<Res> {
  const headers: Record<string, string> = {};
  if (init.cookie) headers.cookie = init.cookie;
  const origin = init.origin === undefined ? new URL(url).origin : init.origin;
  if (origin !== null) headers.origin = origin;
  let body: string | undefined;
  if (init.form) {
    headers['content-type'] = 'application/x-www-form-urlencoded';
    body = new URLSearchParams(init.form).toString();
  }
  const res = await fetch(url, {
    method: init.method ?? (init.form ? 'POST' : 'GET'),
    headers,
    body,
    redirect: 'manual',
  });
  return {
    status: res.status,
    location: res.headers.get('location'),
    cookies: res.headers.getSetCookie(),
    text: await res.text(),
    headers: res.headers,
  };
}

async function login(base: string, user: string, password: string): Promise<{ res: Res; cookie: string }> {
  const res = await call(`${base}/dashboard/login`, { form: { username: user, password } });
  const cookie = res.cookies[0]?.split(';')[0] ?? '';
  return { res, cookie };
}

/** The session's CSRF token, read from the logout form the way a browser would see it. */
async function csrfOf(base: string, cookie: string): Promise<string> {
  const page = await call(`${base}/dashboard/audit`, { cookie });
  const match = /name="csrf" value="([^"]+)"/.exec(page.text);
  expect(match).not.toBeNull();
  return match![1]!;
}

const audit = async (action: string, actor: string) =>
  (
    await runtimes[0]!.pool.query<{ detail: Record<string, unknown>; ip: string; source: string }>(
      'SELECT detail, ip, source FROM audit_log WHERE action = $1 AND actor = $2 ORDER BY id',
      [action, actor],
    )
  ).rows;

async function replica(): Promise<string> {
  const rt = await bootstrap(config, 'dashboard-test', MODULES);
  runtimes.push(rt);
  const server = await startDashboard(rt);
  return `http://127.0.0.1:${server.port}`;
}

beforeAll(async () => {
  a = await replica();
  b = await replica();
  orders = new Queue(OrdersQueues.commands, {
    connection: runtimes[0]!.redis,
    prefix: config.redis.queuePrefix,
  });
});
afterAll(async () => {
  await orders?.close();
  for (const rt of runtimes.toReversed()) await rt.lifecycle.close();
  await cleanup(config);
});

describe('dashboard authentication', () => {
  it('lets nobody in anonymously', async () => {
    expect(await call(`${a}/dashboard`)).toMatchObject({ status: 302, location: '/dashboard/login' });
    expect(await call(`${a}/dashboard/dead-letters`)).toMatchObject({
      status: 302,
      location: '/dashboard/login',
    });
    expect((await call(`${a}/dashboard/queues/static/images/logo.svg`)).status).toBe(302);
    expect((await call(`${a}/dashboard/orders`)).status).toBe(302);
    // The icon is public (the login page shows it), and nothing else is.
    const icon = await call(`${a}/dashboard/favicon.svg`);
    expect(icon.status).toBe(200);
    expect(icon.headers.get('content-type')).toContain('image/svg+xml');
    expect((await call(`${a}/dashboard/queues/api/queues`)).status).toBe(401);
    expect((await call(`${a}/dashboard/queues/api/queues/orders/pause`, { method: 'PUT' })).status).toBe(401);
    expect((await call(`${a}/dashboard/dead-letters/x/redrive`, { form: { csrf: 'x' } })).status).toBe(401);
    expect(
      (await call(`${a}/dashboard/queues/api/queues`, { cookie: 'conveyor_dashboard=' + 'A'.repeat(43) }))
        .status,
    ).toBe(401);
    expect((await call(`${a}/dashboard/login`)).status).toBe(200);
  });

  it('logs an admin in with a Redis session any replica serves, behind a hardened cookie', async () => {
    const { res, cookie } = await login(a, 'root', 'correct horse battery staple');
    expect(res).toMatchObject({ status: 303, location: '/dashboard' });
    const attrs = res.cookies[0]!.split(';').map((s) => s.trim().toLowerCase());
    expect(attrs).toEqual(
      expect.arrayContaining(['httponly', 'samesite=strict', 'path=/dashboard', 'max-age=600']),
    );
    expect(attrs).not.toContain('secure'); // not in test; see the production case below
    const token = cookie.split('=')[1]!;
    const keys = await runtimes[0]!.redis.keys(`${config.redis.queuePrefix}:dashboard:session:*`);
    expect(keys).toHaveLength(1);
    expect(keys[0]).not.toContain(token); // stored under a hash of the token
    const ttl = await runtimes[0]!.redis.ttl(keys[0]!);
    expect(ttl).toBeGreaterThan(590);
    expect(ttl).toBeLessThanOrEqual(600);

    // Replica B has never seen this operator: the session is in Redis, not in A's memory.
    const queues = await call(`${b}/dashboard/queues/api/queues?activeQueue=orders&status=latest&page=1`, {
      cookie,
    });
    expect(queues.status).toBe(200);
    const names = (JSON.parse(queues.text) as { queues: { name: string; readOnlyMode: boolean }[] }).queues;
    expect(names.map((q) => q.name).sort()).toEqual([...allQueueNames(MODULES)].sort());
    expect(names.every((q) => !q.readOnlyMode)).toBe(true);
    // The landing page is the Overview; Bull Board lives under Queues, with the console's bar and a
    // policy that keeps every request on our origin (its web font link is gone).
    const landing = await call(`${b}/dashboard`, { cookie });
    expect(landing.text).toContain('<title>Overview · Conveyor</title>');
    expect(landing.headers.get('content-security-policy')).toContain("default-src 'none'");
    const board = await call(`${b}/dashboard/queues/`, { cookie });
    expect(board.text).toContain('<base href="/dashboard/queues/"');
    expect(board.text).toContain('data-testid="top-bar"');
    expect(board.text).not.toMatch(/href="(https?:)?\/\//);
    expect(board.headers.get('content-security-policy')).toMatch(/default-src 'self'.*script-src 'self'/);
    // Old Bull Board deep links land on the same view under Queues.
    expect(await call(`${b}/dashboard/queue/orders?status=failed`, { cookie })).toMatchObject({
      status: 301,
      location: '/dashboard/queues/queue/orders?status=failed',
    });
    expect((await audit('login', 'root'))[0]).toMatchObject({ ip: '127.0.0.1', source: 'dashboard' });
  });

  it('refuses bad credentials with the same answer for a wrong user and a wrong password, and audits them', async () => {
    const wrongPassword = await login(a, 'root', 'Tr0ub4dor&3');
    const wrongUser = await login(a, 'mallory', 'correct horse battery staple');
    const viewerPasswordAsAdmin = await login(a, 'root', 'viewer pass');
    for (const r of [wrongPassword, wrongUser, viewerPasswordAsAdmin]) {
      expect(r.res.status).toBe(401);
      expect(r.res.cookies).toEqual([]);
      expect(r.res.text).toContain('Invalid user name or password.');
    }
    // One address's failures are one streak: its first is audited, the rest counted for its summary.
    expect(await audit('login.failed', 'root')).toEqual([
      expect.objectContaining({ detail: { reason: 'bad_credentials' } }),
    ]);
    expect(await audit('login.failed', 'mallory')).toEqual([]);
    expect((await call(`${a}/dashboard/login`, { form: { username: 'root', password: '' } })).status).toBe(
      400,
    );
    // A success from that address ends the streak: the summary names every user name tried.
    expect((await login(b, 'watcher', 'viewer pass')).res.status).toBe(303);
    expect((await audit('login.failed', 'root'))[1]).toMatchObject({
      detail: { reason: 'repeated', count: 3, badCredentials: 3, users: { root: 2, mallory: 1 } },
    });
  });

  it('gives a viewer the read-only board and refuses its mutating calls on the server', async () => {
    const { cookie } = await login(b, 'watcher', 'viewer pass');
    const queues = await call(`${a}/dashboard/queues/api/queues?activeQueue=orders&status=latest&page=1`, {
      cookie,
    });
    expect(queues.status).toBe(200);
    expect(
      (JSON.parse(queues.text) as { queues: { readOnlyMode: boolean }[] }).queues.every(
        (q) => q.readOnlyMode,
      ),
    ).toBe(true);
    for (const [method, path] of [
      ['PUT', 'queues/orders/pause'],
      ['PUT', 'queues/orders/clean/failed'],
      ['PUT', 'queues/orders/retry/failed'],
      ['PUT', 'queues/orders/obliterate'],
      ['POST', 'queues/orders/add'],
      ['PATCH', 'queues/orders/job-1/promote'],
    ] as const) {
      expect(
        (await call(`${a}/dashboard/queues/api/${path}`, { method, cookie })).status,
        `${method} ${path}`,
      ).toBe(403);
    }
    expect(await orders.isPaused()).toBe(false);
    const denied = await audit('queue.pause', 'watcher');
    expect(denied[0]?.detail).toMatchObject({ denied: true, status: 403, method: 'PUT' });

    // The admin can, and is audited too.
    const admin = await login(a, 'root', 'correct horse battery staple');
    expect(
      (await call(`${a}/dashboard/queues/api/queues/orders/pause`, { method: 'PUT', cookie: admin.cookie }))
        .status,
    ).toBe(200);
    expect(await orders.isPaused()).toBe(true);
    expect(
      (await call(`${a}/dashboard/queues/api/queues/orders/resume`, { method: 'PUT', cookie: admin.cookie }))
        .status,
    ).toBe(200);
    expect(await orders.isPaused()).toBe(false);
    expect((await audit('queue.pause', 'root'))[0]?.detail).toMatchObject({ status: 200, method: 'PUT' });
  });

  it('protects dead-letter actions with role, CSRF token and origin checks', async () => {
    const id = 'rabbitmq-csrf-1';
    await createPgDeadLetterSink(runtimes[0]!.pool).record({
      id,
      transport: 'rabbitmq',
      origin: 'conveyor.projections',
      kind: 'event',
      messageKey: null,
      payload: Buffer.from('not json <b>bold</b>'),
      headers: {},
      error: 'message is not valid JSON',
      stack: null,
      attempts: 1,
      correlationId: null,
      subjectId: null,
      firstFailedAt: null,
    });
    const admin = await login(a, 'root', 'correct horse battery staple');
    const token = await csrfOf(a, admin.cookie);
    const discard = (form: Record<string, string>, origin?: string | null) =>
      call(`${a}/dashboard/dead-letters/${id}/discard`, {
        cookie: admin.cookie,
        form,
        ...(origin === undefined ? {} : { origin }),
      });
    expect((await discard({})).status).toBe(403);
    expect((await discard({ csrf: token.slice(0, -1) + (token.endsWith('A') ? 'B' : 'A') })).status).toBe(
      403,
    );
    expect((await discard({ csrf: token }, 'https://evil.example')).status).toBe(403);
    expect((await discard({ csrf: token }, null)).status).toBe(403); // no Origin, no Sec-Fetch-Site
    // A token from another session is worthless here.
    const viewer = await login(a, 'watcher', 'viewer pass');
    expect((await discard({ csrf: await csrfOf(a, viewer.cookie) })).status).toBe(403);
    const [pending] = (await runtimes[0]!.pool.query('SELECT status FROM dead_letters WHERE id = $1', [id]))
      .rows;
    expect(pending.status).toBe('pending');

    const ok = await discard({ csrf: token, reason: 'unparseable, producer fixed' });
    expect(ok).toMatchObject({ status: 303, location: `/dashboard/dead-letters/${id}?notice=discarded` });
    const detail = await call(`${a}${ok.location}`, { cookie: admin.cookie });
    expect(detail.text).toContain('not json &lt;b&gt;bold&lt;/b&gt;');
    expect(detail.text).not.toContain('<b>bold</b>');
    expect(detail.headers.get('content-security-policy')).toContain("default-src 'none'");
    expect((await audit('dead_letter.discard', 'root'))[0]?.detail).toMatchObject({
      reason: 'unparseable, producer fixed',
    });
    // Login itself is protected from cross-site form posts.
    expect(
      (
        await call(`${a}/dashboard/login`, {
          form: { username: 'root', password: 'x' },
          origin: 'https://evil.example',
        })
      ).status,
    ).toBe(403);
  });

  it('logs out by deleting the Redis session on every replica', async () => {
    const { cookie } = await login(a, 'root', 'correct horse battery staple');
    const token = await csrfOf(a, cookie);
    expect((await call(`${b}/dashboard/logout`, { cookie, form: {} })).status).toBe(403); // CSRF token required
    const out = await call(`${b}/dashboard/logout`, { cookie, form: { csrf: token } });
    expect(out).toMatchObject({ status: 303, location: '/dashboard/login' });
    expect(out.cookies[0]).toMatch(/Max-Age=0/);
    expect((await call(`${a}/dashboard/queues/api/queues`, { cookie })).status).toBe(401);
    expect(await call(`${a}/dashboard`, { cookie })).toMatchObject({
      status: 302,
      location: '/dashboard/login',
    });
    expect((await audit('logout', 'root')).length).toBeGreaterThan(0);
  });

  it('rate-limits logins per IP and user name in Redis, across replicas', async () => {
    for (let i = 0; i < 10; i++) {
      expect((await login(i % 2 ? a : b, 'root', `guess-${i}`)).res.status).toBe(401);
    }
    const limited = await login(a, 'root', 'correct horse battery staple');
    expect(limited.res.status).toBe(429);
    expect(Number(limited.res.headers.get('retry-after'))).toBeGreaterThan(0);
    expect(limited.cookie).toBe('');
    // Another user name from the same address has its own budget.
    expect((await login(b, 'watcher', 'viewer pass')).res.status).toBe(303);
    // The refusal is counted in the streak's summary, written when that success ended it.
    expect(await audit('login.failed', 'root')).toContainEqual(
      expect.objectContaining({
        detail: expect.objectContaining({
          reason: 'repeated',
          count: 11,
          badCredentials: 10,
          rateLimited: 1,
        }),
      }),
    );
  });
});

describe('dashboard credentials policy', () => {
  const dashboard = {
    user: 'admin',
    password: '',
    viewerUser: 'viewer',
    viewerPassword: '',
    sessionTtlSeconds: 60,
    port: 0,
    host: '127.0.0.1',
  };

  it('refuses to start in production without an admin password', () => {
    expect(() => createCredentials({ env: 'production', dashboard }, testLogger())).toThrow(StartupError);
  });

  it('in development, an empty password disables that role instead of inventing a default', () => {
    const creds = createCredentials(
      { env: 'development', dashboard: { ...dashboard, viewerPassword: 'v' } },
      testLogger(),
    );
    expect(creds.enabledRoles).toEqual(['viewer']);
    expect(creds.verify('admin', 'admin')).toBeNull();
    expect(creds.verify('admin', '')).toBeNull();
    expect(creds.verify('viewer', 'v')).toBe('viewer');
  });

  it('sets the Secure flag on the session cookie in production', async () => {
    const prod = loadConfig(
      { ...env, NODE_ENV: 'production', REDIS_REQUIRE_AOF: 'false' },
      { modules: MODULES },
    );
    const rt = await bootstrap(prod, 'dashboard-prod-test', MODULES);
    runtimes.push(rt);
    const { port } = await startDashboard(rt);
    const { res } = await login(`http://127.0.0.1:${port}`, 'watcher', 'viewer pass');
    expect(res.status).toBe(303);
    expect(res.cookies[0]).toMatch(/; Secure/);
  });
});
