import { readFileSync } from 'node:fs';
import { mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Queue, Worker } from 'bullmq';
import { Redis } from 'ioredis';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseAllDocuments } from 'yaml';
import { breakersKey } from '../../shared/resilience/breaker-reports.ts';
import { bullmqGroupsKey } from '../../shared/bus/bullmq/bus.ts';
import { QueueNames } from '../../shared/queue/names.ts';
import { createOverviewSource } from '../../dashboard/overview/overview.ts';
import { COMMAND_SCALERS, PROJECTIONS_SCALERS, type ScalerTarget } from '../../dashboard/overview/scalers.ts';
import { startDashboard } from '../../dashboard/server.ts';
import { OrdersQueues } from '../../modules/orders/queue.ts';
import { WORKER_KINDS } from '../../workers/start.ts';
import { launchBrowser, signIn, textOf, watchRequests, type Operator } from '../support/browser.ts';
import { eventually, testConfig } from '../support/env.ts';
import { request, sampleOrder } from '../support/http.ts';
import { startPlatform, type Platform } from '../support/platform.ts';

// The operators' console in a real headless Chromium against a real platform (API, every worker kind,
// Redis, PostgreSQL): the Overview as landing page, one top bar to every page, an order's story, a
// redrive that fails again and says so, bulk actions behind a confirmation, and the read-only role.
const ROOT = fileURLToPath(new URL('../../', import.meta.url));
// docs/operators.md screenshots: CONSOLE_SCREENSHOTS_DIR=docs npx vitest run test/e2e/console.test.ts
const SHOTS = process.env.CONSOLE_SCREENSHOTS_DIR
  ? join(ROOT, process.env.CONSOLE_SCREENSHOTS_DIR)
  : join(tmpdir(), 'conveyor-console');
const ADMIN: Operator = { user: 'console-admin', password: 'admin-console-secret' };
const VIEWER: Operator = { user: 'console-viewer', password: 'viewer-console-secret' };
const NAV = ['Overview', 'Queues', 'Dead letters', 'Orders', 'Audit log'] as const;

let platform: Platform;
let browser: Browser;
let base: string;
let orders: Queue;
const contexts: BrowserContext[] = [];
const query = <T extends Record<string, unknown>>(sql: string, params: unknown[] = []) =>
  platform.rt.pool.query<T>(sql, params).then((r) => r.rows);

async function newContext(): Promise<BrowserContext> {
  const context = await browser.newContext({ viewport: { width: 1440, height: 1000 } });
  contexts.push(context);
  return context;
}

async function placeOrder(over: Record<string, unknown> = {}, headers: Record<string, string> = {}) {
  const res = await request(`${platform.url}/v1/orders`, {
    method: 'POST',
    json: sampleOrder(over),
    headers,
  });
  expect(res.status).toBe(202);
  return res.body.orderId as string;
}

async function orderStatus(orderId: string, status: string): Promise<void> {
  await eventually(
    async () => (await request(`${platform.url}/v1/orders/${orderId}`)).body.status === status,
    { what: `order ${orderId} to be ${status}` },
  );
}

/** The order decided, and every event of it published and projected: its story has nothing left to happen. */
async function settled(orderId: string): Promise<void> {
  await eventually(
    async () => {
      const [row] = await query<{ events: number; pending: number }>(
        `SELECT count(*)::int AS events,
                count(*) FILTER (WHERE o.published_at IS NULL
                  OR NOT EXISTS (SELECT 1 FROM projection_inbox i WHERE i.event_id = o.event_id))::int AS pending
           FROM outbox o WHERE o.aggregate_id = $1`,
        [orderId],
      );
      return !!row && row.events > 0 && row.pending === 0;
    },
    { what: `order ${orderId} to be decided and projected` },
  );
}

/** A trigger that refuses the order rows of one customer with `message` (a real database failure). */
async function refuseOrdersOf(customerId: string, message: string): Promise<void> {
  await query(`
    CREATE OR REPLACE FUNCTION refuse_console() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN IF NEW.customer_id = '${customerId}' AND NEW.status <> 'dead_lettered' THEN RAISE EXCEPTION '${message}'; END IF;
    RETURN NEW; END $$;
    DROP TRIGGER IF EXISTS refuse_console ON orders;
    CREATE TRIGGER refuse_console BEFORE INSERT OR UPDATE ON orders FOR EACH ROW EXECUTE FUNCTION refuse_console();`);
}

async function clickNav(page: Page, label: (typeof NAV)[number]): Promise<void> {
  await page.getByTestId('top-bar').getByRole('link', { name: label, exact: true }).click();
  await expect
    .poll(() => page.getByTestId('top-bar').locator('nav a[aria-current="page"]').textContent())
    .toBe(label);
}

beforeAll(async () => {
  mkdirSync(SHOTS, { recursive: true });
  platform = await startPlatform(
    testConfig({
      ORDERS_ATTEMPTS: '2',
      ORDERS_BACKOFF_MS: '20',
      DASHBOARD_PORT: '0',
      DASHBOARD_USER: ADMIN.user,
      DASHBOARD_PASSWORD: ADMIN.password,
      DASHBOARD_VIEWER_USER: VIEWER.user,
      DASHBOARD_VIEWER_PASSWORD: VIEWER.password,
    }),
    { workers: WORKER_KINDS },
  );
  const dashboard = await startDashboard(platform.rt); // closed by the platform's lifecycle
  base = `http://127.0.0.1:${dashboard.port}`;
  orders = new Queue(OrdersQueues.commands, {
    connection: platform.rt.redis,
    prefix: platform.config.redis.queuePrefix,
  });
  browser = await launchBrowser();
});

afterAll(async () => {
  for (const c of contexts) await c.close().catch(() => undefined);
  await browser?.close();
  await orders?.close();
  await platform?.close();
});

describe('the operators console in a browser', () => {
  it('lands on the Overview after login and reaches every page from one top bar, asking no other origin', async () => {
    const context = await newContext();
    const watch = watchRequests(context, base);
    const page = await signIn(context, base, ADMIN);
    expect(await page.title()).toBe('Overview · Conveyor');
    expect(await textOf(page, 'verdict')).toMatch(/Healthy|Needs attention|Unhealthy/);
    const nav = page.getByTestId('top-bar').getByRole('link');
    expect(await nav.allTextContents()).toEqual(expect.arrayContaining([...NAV]));
    expect(await textOf(page, 'who')).toContain(ADMIN.user);

    // Queues: Bull Board under the same bar, its header below the bar, dead-letter queues without a
    // "No workers" alarm (nothing consumes them by design).
    await clickNav(page, 'Queues');
    expect(new URL(page.url()).pathname).toBe('/dashboard/queues/');
    await page.getByText(OrdersQueues.deadLetters, { exact: true }).first().waitFor();
    const barBottom = (await page.getByTestId('top-bar').boundingBox())!;
    const boardHeader = (await page.locator('#root header, #root [class^="header-"]').first().boundingBox())!;
    expect(boardHeader.y).toBeGreaterThanOrEqual(barBottom.y + barBottom.height - 1);
    const listing = await context.request.get(
      `${base}/dashboard/queues/api/queues?activeQueue=orders&status=latest&page=1`,
    );
    const boardQueues = ((await listing.json()) as { queues: { name: string; hasWorkers: boolean | null }[] })
      .queues;
    const dlq = boardQueues.filter((q) => q.name.endsWith('-dead-letters'));
    expect(dlq.length).toBeGreaterThan(1);
    expect(dlq.every((q) => q.hasWorkers === null)).toBe(true);
    expect(boardQueues.find((q) => q.name === OrdersQueues.commands)?.hasWorkers).toBe(true);

    for (const label of ['Dead letters', 'Orders', 'Audit log', 'Overview'] as const) {
      await clickNav(page, label);
      expect(await page.locator('main h1').first().textContent()).toContain(
        label === 'Audit log' ? 'Audit log' : label,
      );
    }
    // The audit log shows whole user agents (this browser's, from the login), wrapped, not clipped.
    await clickNav(page, 'Audit log');
    const ua = await page.evaluate<string>('navigator.userAgent');
    expect(await page.getByTestId('user-agent').allTextContents()).toContain(ua);

    // Our own icon, served by us; not one request left this origin and the CSP was never violated.
    const icon = await page.locator('link[rel=icon]').getAttribute('href');
    const served = await context.request.get(`${base}${icon}`);
    expect(served.status()).toBe(200);
    expect(served.headers()['content-type']).toContain('image/svg+xml');
    expect(watch.foreign).toEqual([]);
    expect(watch.cspViolations).toEqual([]);

    // Keyboard: the first Tab stop skips the bar; a lookup is typed and submitted without a mouse.
    await clickNav(page, 'Overview');
    await page.keyboard.press('Tab');
    expect(await page.evaluate<string>('document.activeElement.textContent.trim()')).toBe('Skip to content');
  });

  it('shows an order’s whole story, looked up by its id or its customer', async () => {
    const customer = `c-story-${Date.now().toString(36)}`;
    const orderId = await placeOrder(
      { customerId: customer },
      { 'idempotency-key': `console-${customer}`, 'x-correlation-id': `corr-${customer}` },
    );
    await orderStatus(orderId, 'completed');
    await settled(orderId);

    const page = await signIn(await newContext(), base, ADMIN);
    await clickNav(page, 'Orders');
    // Keyboard only: the lookup field has focus, Enter submits.
    await page.keyboard.type(orderId);
    await page.keyboard.press('Enter');
    await page.waitForURL(`${base}/dashboard/orders/${orderId}`);
    expect(await textOf(page, 'order-status')).toBe('completed');
    expect(await textOf(page, 'correlation-id')).toBe(`corr-${customer}`);
    // Which key posted it: the development key (no API_KEYS configured) is principal `dev`.
    expect(await textOf(page, 'accepted-by')).toBe('API key dev');
    const kinds = await page
      .getByTestId('timeline')
      .locator('li')
      .evaluateAll((lis) => lis.map((li) => li.getAttribute('data-kind')));
    for (const kind of ['accepted', 'decided', 'event', 'published', 'projected'])
      expect(kinds, `timeline has a ${kind} moment`).toContain(kind);
    expect(kinds.indexOf('accepted')).toBeLessThan(kinds.indexOf('projected'));
    const events = (await textOf(page, 'events')) ?? '';
    expect(events).toContain('order.placed');
    expect(events).toContain('projections at');

    // By customer: the read model's recent orders, each linking to its story.
    await clickNav(page, 'Orders');
    await page.getByLabel('Order id or customer id').fill(customer);
    await page.getByRole('button', { name: 'Look up' }).click();
    await page.locator(`tr[data-order="${orderId}"] a`).click();
    await page.waitForURL(`${base}/dashboard/orders/${orderId}`);

    // An id nobody knows is said to be unknown, not shown as an empty story.
    const unknown = await page.goto(`${base}/dashboard/orders/00000000-0000-4000-8000-000000000000`);
    expect(unknown?.status()).toBe(404);
    expect(await textOf(page, 'unknown-order')).toContain('Not in the write model');
  });

  it('tells the truth after a redrive: failed again with the new error, then done', async () => {
    const customer = 'c-console-fail';
    await refuseOrdersOf(customer, 'ledger offline');
    const orderId = await placeOrder({ customerId: customer });
    await orderStatus(orderId, 'dead_lettered');
    await eventually(async () => (await orders.getJobState(orderId)) === 'completed', {
      what: 'its job to complete once dead-lettered',
    });

    const page = await signIn(await newContext(), base, ADMIN);
    await page.goto(`${base}/dashboard/orders/${orderId}`);
    expect(await textOf(page, 'order-status')).toBe('dead_lettered');
    // Both attempts, by the delivery core's count (BullMQ's own counted only the completion).
    expect(await textOf(page, 'job-attempts')).toBe('2 made of 2 allowed');
    await page
      .getByTestId('timeline')
      .getByRole('link', { name: /Dead-lettered from bullmq orders/ })
      .click();
    expect(await textOf(page, 'error')).toContain('ledger offline');

    // The ledger is still down, with a new message: the redrive fails again at once.
    await refuseOrdersOf(customer, 'ledger still offline');
    await page.getByTestId('redrive').focus();
    await page.keyboard.press('Enter');
    expect(await textOf(page, 'notice')).toContain('Redrive sent');
    expect(await textOf(page, 'notice')).not.toContain('Redriven');
    await page.locator('[data-testid=outcome] [data-outcome=failed_again]').waitFor({ timeout: 20_000 });
    expect(await textOf(page, 'outcome-error')).toContain('ledger still offline');
    expect(await textOf(page, 'status')).toContain('pending');
    expect(await page.locator('.notice:not(.error):not(.info)').count()).toBe(0); // nothing green
    await page.screenshot({ path: join(SHOTS, 'console-redrive-failed-again.png'), fullPage: true });

    // The list says the same.
    await page.goto(`${base}/dashboard/dead-letters?status=all&orderId=${orderId}`);
    expect(await page.getByTestId('row-outcome').first().textContent()).toContain('failed again');

    // The ledger is back: the next redrive completes the order, and the page follows it there.
    await query('DROP TRIGGER refuse_console ON orders');
    await page
      .getByRole('link', { name: /Open dead letter/ })
      .first()
      .click();
    await page.getByTestId('redrive').click();
    await page.locator('[data-testid=outcome] [data-outcome=done]').waitFor({ timeout: 20_000 });
    expect(await textOf(page, 'outcome')).toContain('order completed');
    await orderStatus(orderId, 'completed');
    await settled(orderId);

    // The order's story holds all of it: both dead-letterings, both redrives, and the completion.
    await page.getByTestId('order-link').click();
    await page.waitForURL(`${base}/dashboard/orders/${orderId}`);
    expect(await textOf(page, 'order-status')).toBe('completed');
    const timeline = await textOf(page, 'timeline');
    expect(timeline).toContain('Order dead-lettered (order.dead_lettered)');
    expect(timeline).toContain('Failed again after the redrive');
    expect(timeline).toContain('Order completed (order.placed)');
    expect(timeline.match(/Redriven by an operator/g)).toHaveLength(2);
    expect(timeline).toContain(ADMIN.user);
    await page.screenshot({ path: join(SHOTS, 'console-order.png'), fullPage: true });
  });

  it('redrives or discards a filtered selection in bulk after a confirmation that says how many', async () => {
    const marker = `bulk-${Date.now().toString(36)}`;
    const jobIds = [1, 2, 3].map((i) => `${marker}-${i}`);
    // Poison commands: dead-lettered at once, and again at once on every redrive.
    await orders.addBulk(
      jobIds.map((jobId) => ({ name: 'place-order', data: { poison: marker }, opts: { jobId } })),
    );
    const ids = jobIds.map((j) => `bullmq-${OrdersQueues.commands}-${j}`);
    await eventually(
      async () =>
        (await query('SELECT 1 FROM dead_letters WHERE id = ANY($1) AND status = $2', [ids, 'pending']))
          .length === 3,
      { what: 'the poison jobs to be dead-lettered' },
    );
    // One of them is handled by an API client first: the console must not count it.
    await query(`UPDATE dead_letters SET status = 'discarded' WHERE id = $1`, [ids[2]]);

    const page = await signIn(await newContext(), base, ADMIN);
    await page.goto(
      `${base}/dashboard/dead-letters?status=pending&transport=bullmq&origin=${OrdersQueues.commands}`,
    );
    await page.getByTestId('bulk-redrive').click();
    const pendingFromOrders = (
      await query<{ n: number }>(
        `SELECT count(*)::int AS n FROM dead_letters WHERE status = 'pending' AND origin = $1`,
        [OrdersQueues.commands],
      )
    )[0]!.n;
    expect(await textOf(page, 'bulk-count')).toContain(`sends ${pendingFromOrders} pending dead letter`);
    await page.getByTestId('bulk-confirm').click();
    expect(await textOf(page, 'notice')).toContain(`Redrive sent for ${pendingFromOrders} dead letter`);
    // Each poison command failed again, and its row says so.
    for (const id of ids.slice(0, 2)) {
      await page.locator(`tr[data-id="${id}"] [data-outcome="failed_again"]`).waitFor({ timeout: 60_000 });
    }
    expect(await page.locator(`tr[data-id="${ids[2]}"] [data-testid=row-status]`).textContent()).toContain(
      'discarded',
    );

    // Discard the same selection: the confirmation counts again, the reason is kept.
    await page.goto(
      `${base}/dashboard/dead-letters?status=pending&transport=bullmq&origin=${OrdersQueues.commands}`,
    );
    await page.getByTestId('bulk-discard').click();
    expect(await textOf(page, 'bulk-count')).toContain(`discards ${pendingFromOrders} pending dead letter`);
    await page.getByLabel('Reason for discarding (optional)').fill('poison from a test producer');
    await page.getByTestId('bulk-confirm').click();
    expect(await textOf(page, 'notice')).toContain(`Discarded ${pendingFromOrders} dead letter`);
    const rows = await query<{ status: string }>('SELECT status FROM dead_letters WHERE id = ANY($1)', [ids]);
    expect(rows.map((r) => r.status)).toEqual(['discarded', 'discarded', 'discarded']);
    const summary = await query<{ detail: { counts: { done: number }; reason: string } }>(
      `SELECT detail FROM audit_log WHERE action = 'dead_letter.discard_bulk' AND actor = $1`,
      [ADMIN.user],
    );
    expect(summary[0]?.detail).toMatchObject({
      counts: { done: pendingFromOrders },
      reason: 'poison from a test producer',
    });
  });

  it('answers "is it healthy?" from the same sources as /metrics: backlog, KEDA replicas, breakers', async () => {
    const page = await signIn(await newContext(), base, ADMIN);
    // A paused queue with 401 runnable jobs: KEDA would ask for ceil(401 / 200) = 3 order workers.
    await orders.pause();
    try {
      await orders.addBulk(
        Array.from({ length: 401 }, (_, i) => ({ name: 'place-order', data: { backlog: i } })),
      );
      await page.reload();
      expect(await textOf(page, `backlog-${OrdersQueues.commands}`)).toBe('401');
      expect(await textOf(page, 'desired-conveyor-worker-orders')).toBe('3');
      expect(await textOf(page, 'verdict')).toContain(`Queue "${OrdersQueues.commands}" is paused`);
    } finally {
      await orders.drain();
      await orders.resume();
    }

    // The workers' breaker reports (Redis): an open breaker makes the platform unhealthy.
    const key = breakersKey(platform.config.redis.queuePrefix);
    const now = new Date().toISOString();
    await platform.rt.redis.hset(key, {
      'payment/worker-a': JSON.stringify({ state: 'open', since: now, reportedAt: now }),
      'payment/worker-b': JSON.stringify({ state: 'closed', since: now, reportedAt: now }),
      // A replica gone for minutes does not count.
      'payment/worker-gone': JSON.stringify({
        state: 'open',
        since: now,
        reportedAt: '2020-01-01T00:00:00.000Z',
      }),
    });
    try {
      await page.reload();
      expect(await textOf(page, 'verdict')).toContain('Circuit breaker "payment" is open');
      expect(await page.getByTestId('verdict').getAttribute('class')).toContain('unhealthy');
      // worker-b, and this process's own order worker, which reports its payment breaker closed.
      expect(await textOf(page, 'breakers')).toContain('2 closed, 0 half-open, 1 open');
    } finally {
      await platform.rt.redis.del(key);
    }

    // A job in a failed set — here of an event group's queue, which no static list names — is
    // retried by nothing and shown by no dead letter: Unhealthy, with the count and the queue.
    const groups = bullmqGroupsKey(platform.config.redis.queuePrefix);
    const stranded = new Queue(`${QueueNames.events}.console-stranded`, {
      connection: platform.rt.redis,
      prefix: platform.config.redis.queuePrefix,
    });
    const connection = new Redis(platform.config.redis.url, { maxRetriesPerRequest: null });
    const failer = new Worker(stranded.name, null, {
      connection,
      prefix: platform.config.redis.queuePrefix,
      autorun: false,
    });
    try {
      await platform.rt.redis.sadd(groups, 'console-stranded');
      await stranded.add('event', { stranded: true }, { attempts: 1 });
      const job = await failer.getNextJob('console-test');
      await job!.moveToFailed(new Error('the dead letter could not be recorded'), 'console-test');
      await page.reload();
      expect(await page.getByTestId('verdict').getAttribute('class')).toContain('unhealthy');
      expect(await textOf(page, 'verdict')).toContain(
        `Queue "${stranded.name}": 1 job in BullMQ's failed set`,
      );
      expect(await textOf(page, `failed-${stranded.name}`)).toBe('1');
    } finally {
      await failer.close();
      connection.disconnect();
      await platform.rt.redis.srem(groups, 'console-stranded');
      await stranded.obliterate({ force: true });
      await stranded.close();
    }

    // Throughput from the write model: a burst with some rejections (an unsupported currency), on top of
    // what the earlier tests decided.
    const burst = await Promise.all(
      Array.from({ length: 40 }, (_, i) =>
        placeOrder({ customerId: `c-burst-${i % 7}`, currency: i % 8 === 0 ? 'XTS' : 'EUR' }),
      ),
    );
    for (const id of burst) await settled(id);
    const decided = (
      await query<{ n: number }>(`SELECT count(*)::int AS n FROM outbox WHERE event_type LIKE 'order.%'`)
    )[0]!.n;
    await page.reload();
    expect(await textOf(page, `decided-${OrdersQueues.commands}`)).toBe(`${decided} decided`);
    await page.screenshot({ path: join(SHOTS, 'console-overview.png'), fullPage: true });
  });

  it('lets the read-only role see every page and change nothing, whatever it sends', async () => {
    const id = `bullmq-${OrdersQueues.commands}-viewer-${Date.now().toString(36)}`;
    await query(
      `INSERT INTO dead_letters (id, transport, origin, kind, payload, error, attempts)
       VALUES ($1, 'bullmq', $2, 'command', '\\x7b7d', 'invalid order command', 1)`,
      [id, OrdersQueues.commands],
    );
    const context = await newContext();
    const watch = watchRequests(context, base);
    const page = await signIn(context, base, VIEWER);
    expect(await textOf(page, 'who')).toContain('viewer');
    for (const label of NAV) await clickNav(page, label);
    const queues = await context.request.get(
      `${base}/dashboard/queues/api/queues?activeQueue=orders&status=latest&page=1`,
    );
    expect(
      ((await queues.json()) as { queues: { readOnlyMode: boolean }[] }).queues.every((q) => q.readOnlyMode),
    ).toBe(true);

    await page.goto(`${base}/dashboard/dead-letters?status=pending`);
    expect(await page.getByTestId('bulk-redrive').count()).toBe(0);
    await page.locator(`tr[data-id="${id}"]`).getByRole('link').click();
    expect(await textOf(page, 'read-only')).toContain('only an admin');
    expect(await page.getByTestId('redrive').count()).toBe(0);

    // Forged with the viewer's own cookie, origin and CSRF token: refused on the server.
    const csrf = await page.locator('input[name=csrf]').first().inputValue();
    const post = (path: string, form: Record<string, string>) =>
      context.request.post(`${base}${path}`, {
        form: { csrf, ...form },
        headers: { origin: base },
        maxRedirects: 0,
      });
    expect((await post(`/dashboard/dead-letters/${id}/redrive`, {})).status()).toBe(403);
    expect((await post(`/dashboard/dead-letters/${id}/discard`, {})).status()).toBe(403);
    expect(
      (
        await post('/dashboard/dead-letters/bulk', {
          action: 'discard',
          transport: 'all',
          count: '1',
          through: 'x',
        })
      ).status(),
    ).toBe(403);
    expect((await context.request.get(`${base}/dashboard/dead-letters/bulk?action=redrive`)).status()).toBe(
      403,
    );
    expect(
      (
        await context.request.put(`${base}/dashboard/queues/api/queues/orders/pause`, {
          headers: { origin: base },
        })
      ).status(),
    ).toBe(403);
    expect(await orders.isPaused()).toBe(false);
    expect(
      (await query<{ status: string }>('SELECT status FROM dead_letters WHERE id = $1', [id]))[0]?.status,
    ).toBe('pending');
    expect(watch.foreign).toEqual([]);
    await page.getByRole('button', { name: 'Log out' }).click();
    await page.waitForURL(`${base}/dashboard/login`);
  });
});

describe('the Overview’s KEDA numbers', () => {
  // The dashboard's image carries no deploy/ (nor a YAML parser): its copy of each ScaledObject must
  // match the manifest it names, or the Overview would promise replicas the cluster never asks for.
  const shipped = (s: ScalerTarget) => {
    const docs = parseAllDocuments(readFileSync(join(ROOT, s.manifest), 'utf8')).map(
      (d) => d.toJS() as unknown,
    );
    // The ScaledObject of this scaler by name: deploy/base/modules.yaml holds one per module.
    const so = docs.find((d) => {
      const doc = d as { kind?: string; metadata?: { name?: string } };
      return doc?.kind === 'ScaledObject' && doc.metadata?.name === s.scaledObject;
    }) as {
      metadata: { name: string };
      spec: {
        minReplicaCount: number;
        maxReplicaCount: number;
        triggers: { metadata: Record<string, string> }[];
      };
    };
    const m = so.spec.triggers[0]!.metadata;
    return {
      scaledObject: so.metadata.name,
      targetValue: Number(m.targetValue ?? m.lagThreshold ?? m.value ?? m.queueLength),
      activationValue: Number(
        m.activationTargetValue ??
          m.activationLagThreshold ??
          m.activationValue ??
          m.activationQueueLength ??
          0,
      ),
      minReplicas: so.spec.minReplicaCount,
      maxReplicas: so.spec.maxReplicaCount,
    };
  };

  it.each(
    [...Object.values(COMMAND_SCALERS), ...Object.values(PROJECTIONS_SCALERS)].map((s) => [s!.manifest, s!]),
  )('match %s', (_manifest, scaler) => {
    const { manifest: _m, metric: _metric, ...numbers } = scaler;
    expect(shipped(scaler)).toEqual(numbers);
  });
});

describe('the Overview’s sources', () => {
  it('reports a broker that does not answer as unavailable, never as zero', async () => {
    const { config } = platform;
    const source = createOverviewSource({
      // RabbitMQ on a port where nothing listens.
      config: {
        ...config,
        bus: {
          ...config.bus,
          kind: 'rabbitmq',
          rabbitmq: { ...config.bus.rabbitmq, url: 'amqp://127.0.0.1:9' },
        },
      },
      pool: platform.rt.pool,
      redis: platform.rt.redis,
      timeoutMs: 1_500,
    });
    try {
      const o = await source.read();
      expect(o.bus.depth).toMatchObject({ ok: false });
      expect(o.bus.scaling).toMatchObject({ ok: false });
      expect(o.findings.map((f) => f.text)).toContainEqual(
        expect.stringContaining('rabbitmq depth unavailable'),
      );
      expect(o.level).not.toBe('healthy');
      // The other sources still answer.
      expect(o.queues.ok && o.outbox.ok && o.activity.ok).toBe(true);
    } finally {
      await source.close();
    }
  });
});
