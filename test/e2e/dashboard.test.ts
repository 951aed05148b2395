import { Queue } from 'bullmq';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startDashboard } from '../../dashboard/server.ts';
import { OrdersQueues } from '../../modules/orders/queue.ts';
import { createPgDeadLetterSink } from '../../shared/dead-letters/dead-letter.ts';
import { QueueNames } from '../../shared/queue/names.ts';
import { launchBrowser, signIn } from '../support/browser.ts';
import { eventually, testConfig } from '../support/env.ts';
import { request, sampleOrder } from '../support/http.ts';
import { startPlatform, type Platform } from '../support/platform.ts';

// The dashboard driven in a real headless Chromium (Debian's package, never a downloaded browser)
// against a real platform: API, order worker, relay and projections on Redis and Postgres.
// (test/e2e/console.test.ts covers the console's newer pages: Overview, order stories, bulk actions.)
const ADMIN = { user: 'ops-admin', password: 'admin-e2e-secret' };
const VIEWER = { user: 'ops-viewer', password: 'viewer-e2e-secret' };

let platform: Platform;
let browser: Browser;
let base: string;
let orders: Queue;
const contexts: BrowserContext[] = [];
const query = <T extends Record<string, unknown>>(sql: string, params: unknown[] = []) =>
  platform.rt.pool.query<T>(sql, params).then((r) => r.rows);

/** A fresh browser profile (cookies of its own). */
async function newContext(): Promise<BrowserContext> {
  const context = await browser.newContext({ viewport: { width: 1400, height: 900 } });
  contexts.push(context);
  return context;
}

const login = (context: BrowserContext, who: { user: string; password: string }): Promise<Page> =>
  signIn(context, base, who);

/** Bull Board (Queues) renders every queue of the platform, dead-letter queues included. */
async function expectQueuesShown(page: Page): Promise<void> {
  await page.goto(`${base}/dashboard/queues/`);
  for (const name of [
    OrdersQueues.deadLetters,
    QueueNames.eventsDeadLetters,
    OrdersQueues.commands,
    QueueNames.events,
  ]) {
    await expect
      .poll(() => page.getByText(name, { exact: true }).count(), { timeout: 15_000 })
      .toBeGreaterThan(0);
  }
}

async function orderStatus(orderId: string, status: string): Promise<void> {
  await eventually(
    async () => (await request(`${platform.url}/v1/orders/${orderId}`)).body.status === status,
    { what: `order ${orderId} to be ${status}` },
  );
}

/** A same-origin request from inside the page, as a script or a crafted form would send it. */
function pageFetch(
  page: Page,
  path: string,
  init: { method: string; form?: Record<string, string> },
): Promise<number> {
  return page.evaluate(
    async ({ path, init }) => {
      const body = init.form ? new URLSearchParams(init.form) : undefined;
      const res = await fetch(path, { method: init.method, body, redirect: 'manual' });
      return res.status;
    },
    { path, init },
  );
}

beforeAll(async () => {
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

describe('operators dashboard in a browser', () => {
  it('sends an anonymous visitor to the login form and refuses Bull Board’s API', async () => {
    const context = await newContext();
    const page = await context.newPage();
    await page.goto(`${base}/dashboard/dead-letters`);
    expect(new URL(page.url()).pathname).toBe('/dashboard/login');
    await expect.poll(() => page.getByRole('button', { name: 'Sign in' }).isVisible()).toBe(true);
    expect((await context.request.get(`${base}/dashboard/queues/api/queues`)).status()).toBe(401);
    await page.getByLabel('User name').fill(ADMIN.user);
    await page.getByLabel('Password').fill('wrong password');
    await page.getByRole('button', { name: 'Sign in' }).click();
    await expect.poll(() => page.getByRole('alert').textContent()).toContain('Invalid user name or password');
  });

  it('lets an admin see the queues, inspect a poison job, and redrive a dead-lettered order to completion', async () => {
    const page = await login(await newContext(), ADMIN);
    await expectQueuesShown(page);
    await page.screenshot({ path: '/tmp/conveyor-dashboard-bull-board.png' });

    // Poison straight onto the queue, carrying markup that must be shown as text, never run.
    const marker = '<img src=x onerror="document.title=\'pwned\'">';
    await orders.add('place-order', { orderId: 'not-a-uuid', note: marker }, { jobId: 'e2e-poison-1' });
    const poisonId = `bullmq-${OrdersQueues.commands}-e2e-poison-1`;
    await eventually(
      async () => (await query('SELECT 1 FROM dead_letters WHERE id = $1', [poisonId])).length === 1,
      {
        what: 'the poison job to be dead-lettered',
      },
    );

    // A valid order dead-lettered by a real database failure (a trigger refusing its rows).
    await query(`
      CREATE FUNCTION refuse_e2e() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN IF NEW.customer_id = 'c-e2e-fail' AND NEW.status <> 'dead_lettered' THEN RAISE EXCEPTION 'ledger offline'; END IF;
      RETURN NEW; END $$;
      CREATE TRIGGER refuse_e2e BEFORE INSERT OR UPDATE ON orders FOR EACH ROW EXECUTE FUNCTION refuse_e2e();`);
    const placed = await request(`${platform.url}/v1/orders`, {
      method: 'POST',
      json: sampleOrder({ customerId: 'c-e2e-fail' }),
    });
    expect(placed.status).toBe(202);
    const orderId = placed.body.orderId as string;
    await orderStatus(orderId, 'dead_lettered');
    await query('DROP TRIGGER refuse_e2e ON orders');

    // A Bull Board action from its own page is audited like the dead-letter actions.
    expect(await pageFetch(page, '/dashboard/queues/api/queues/events/pause', { method: 'PUT' })).toBe(200);
    expect(await pageFetch(page, '/dashboard/queues/api/queues/events/resume', { method: 'PUT' })).toBe(200);

    // The console's top bar, on Bull Board's page too, leads to the dashboard's own pages.
    await page.getByTestId('top-bar').getByRole('link', { name: 'Dead letters' }).click();
    await page.waitForURL(`${base}/dashboard/dead-letters`);
    const poisonRow = page.locator(`tr[data-id="${poisonId}"]`);
    await expect.poll(() => poisonRow.textContent()).toContain('invalid command');
    expect(await poisonRow.textContent()).toContain('<img src=x');
    await page.screenshot({ path: '/tmp/conveyor-dashboard-dead-letters.png' });
    await poisonRow.getByRole('link', { name: 'Open' }).click();
    await expect
      .poll(() => page.getByTestId('payload').textContent())
      .toContain(marker.replaceAll('"', '\\"'));
    expect(await page.locator('[data-testid=payload] img').count()).toBe(0);
    expect(await page.title()).not.toBe('pwned');
    await page.getByTestId('discard').click();
    await expect.poll(() => page.getByTestId('notice').textContent()).toContain('Discarded');
    expect(await page.getByTestId('status').textContent()).toContain('discarded');

    // Filter by transport and order, open the order's dead letter, redrive it from the browser.
    await page.goto(`${base}/dashboard/dead-letters?transport=bullmq&orderId=${orderId}`);
    await page.getByRole('link', { name: 'Open' }).click();
    expect(await page.getByTestId('error').textContent()).toContain('ledger offline');
    await page.screenshot({ path: '/tmp/conveyor-dashboard-dead-letter.png', fullPage: true });
    await page.getByTestId('redrive').click();
    await expect.poll(() => page.getByTestId('notice').textContent()).toContain('Redrive sent');
    await orderStatus(orderId, 'completed');
    // The page follows the message until it is done (it reloads itself while the outcome is open).
    await page.locator('[data-testid=outcome] [data-outcome=done]').waitFor({ timeout: 20_000 });
    expect(await page.getByTestId('redrive').count()).toBe(0);

    await page.goto(`${base}/dashboard/audit?actor=${ADMIN.user}`);
    const audit = (await page.getByTestId('audit').textContent()) ?? '';
    for (const action of [
      'login',
      'dead_letter.discard',
      'dead_letter.redrive',
      'queue.pause',
      'queue.resume',
    ]) {
      expect(audit).toContain(action);
    }
    await page.screenshot({ path: '/tmp/conveyor-dashboard-audit.png', fullPage: true });
  });

  it('shows a viewer the queues and dead letters read-only, and refuses its forged actions server-side', async () => {
    const id = 'kafka-e2e-viewer-1';
    await createPgDeadLetterSink(platform.rt.pool).record({
      id,
      transport: 'kafka',
      origin: 'conveyor.e2e.events',
      kind: 'event',
      messageKey: 'k1',
      payload: Buffer.from('{"not":"an event"}'),
      headers: {},
      error: 'message is not a valid event',
      stack: null,
      attempts: 1,
      correlationId: null,
      subjectId: null,
      firstFailedAt: null,
    });
    const page = await login(await newContext(), VIEWER);
    await expectQueuesShown(page);
    await page.goto(`${base}/dashboard/dead-letters?transport=kafka`);
    await page.locator(`tr[data-id="${id}"]`).getByRole('link', { name: 'Open' }).click();
    await expect.poll(() => page.getByTestId('read-only').isVisible()).toBe(true);
    expect(await page.getByTestId('redrive').count()).toBe(0);
    expect(await page.getByTestId('discard').count()).toBe(0);

    // Forged requests with the viewer's cookies, same origin, and even its own CSRF token (from its
    // logout form): the server refuses them by role.
    const csrf = await page.locator('input[name=csrf]').first().inputValue();
    const forged = page.context().request;
    const headers = { origin: base };
    expect(
      (
        await forged.post(`${base}/dashboard/dead-letters/${id}/redrive`, {
          form: { csrf },
          headers,
          maxRedirects: 0,
        })
      ).status(),
    ).toBe(403);
    expect(
      (
        await forged.post(`${base}/dashboard/dead-letters/${id}/discard`, {
          form: { csrf },
          headers,
          maxRedirects: 0,
        })
      ).status(),
    ).toBe(403);
    expect((await forged.put(`${base}/dashboard/queues/api/queues/orders/pause`, { headers })).status()).toBe(
      403,
    );
    expect(
      (await forged.put(`${base}/dashboard/queues/api/queues/orders/clean/failed`, { headers })).status(),
    ).toBe(403);
    expect(await orders.isPaused()).toBe(false);
    const [row] = await query<{ status: string }>('SELECT status FROM dead_letters WHERE id = $1', [id]);
    expect(row?.status).toBe('pending');
    const denied = await query(
      'SELECT 1 FROM audit_log WHERE actor = $1 AND action = $2 AND (detail->>$3)::boolean',
      [VIEWER.user, 'queue.pause', 'denied'],
    );
    expect(denied).toHaveLength(1);

    await page.getByRole('button', { name: 'Log out' }).click();
    await page.waitForURL(`${base}/dashboard/login`);
    await page.goto(`${base}/dashboard`);
    expect(new URL(page.url()).pathname).toBe('/dashboard/login');
  });
});
