import { randomUUID } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import { serve } from '@hono/node-server';
import { Queue } from 'bullmq';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createDashboardApp } from '../../dashboard/app.ts';
import { createCredentials } from '../../dashboard/auth/credentials.ts';
import { createLoginFailures } from '../../dashboard/auth/login-failures.ts';
import { createLoginLimiter } from '../../dashboard/auth/login-limiter.ts';
import { createDashboardSessions } from '../../dashboard/auth/sessions.ts';
import { createBoards } from '../../dashboard/bull-board.ts';
import { BASE_PATH } from '../../dashboard/context.ts';
import { createRedriveOutcomes } from '../../dashboard/dead-letters/outcome.ts';
import { createJobLookup } from '../../dashboard/jobs.ts';
import { createOrderStories } from '../../dashboard/orders/story.ts';
import { createOverviewSource } from '../../dashboard/overview/overview.ts';
import { createTenantsSource } from '../../dashboard/overview/tenants.ts';
import { createSearchConsole } from '../../dashboard/routes/search.ts';
import { OrdersQueues } from '../../modules/orders/queue.ts';
import { createAuditLog } from '../../shared/audit/audit-log.ts';
import { createRuntimeBulkRunner } from '../../shared/bulk/runtime.ts';
import { createDeadLetterActions } from '../../shared/dead-letters/actions.ts';
import { createPgDeadLetterSink } from '../../shared/dead-letters/dead-letter.ts';
import { createRuntimeRedriver } from '../../shared/dead-letters/runtime-redriver.ts';
import { createDeadLetterStore } from '../../shared/dead-letters/store.ts';
import { allQueueNames, queueOptions } from '../../shared/queue/names.ts';
import { launchBrowser, signIn, textOf, watchRequests, type Operator } from '../support/browser.ts';
import { eventually, testConfig } from '../support/env.ts';
import { request, sampleOrder } from '../support/http.ts';
import { startPlatform, type Platform } from '../support/platform.ts';
import { MODULES } from '../../modules/registry.ts';

// The console's Search page (issue #23) in a real headless Chromium against the API, the relays and
// projector, Redis and PostgreSQL — no order worker, so posted orders stay queued: filter, open a
// result's story, cancel a pending command, bulk-redrive dead-lettered ones after a dry run and its
// confirmation, and not one request to another origin.
const ADMIN: Operator = { user: 'search-admin', password: 'admin-search-secret' };

let platform: Platform;
let browser: Browser;
let base: string;
let closeDashboard: () => Promise<void>;
const contexts: BrowserContext[] = [];
const query = <T extends Record<string, unknown>>(sql: string, params: unknown[] = []) =>
  platform.rt.pool.query<T>(sql, params).then((r) => r.rows);

/** The console as dashboard/server.ts builds it, with the Search page's cancel and bulk actions. */
async function startConsole(): Promise<void> {
  const { config, logger, pool, redis, modules } = platform.rt;
  const prefix = config.redis.queuePrefix;
  const queues = allQueueNames(MODULES).map((name) => new Queue(name, queueOptions(redis, prefix, name)));
  const redriver = createRuntimeRedriver({ config, logger, pool, redis, modules });
  const jobs = createJobLookup(queues);
  const outcomes = createRedriveOutcomes({ pool, jobs });
  const overview = createOverviewSource({ config, pool, redis });
  const tenants = createTenantsSource({ config, redis });
  const search = createSearchConsole(platform.rt);
  const bulkRunner = createRuntimeBulkRunner(platform.rt, { ratePerSecond: 50, pollIntervalMs: 100 });
  bulkRunner.start();
  const app = createDashboardApp(
    {
      config,
      logger,
      pool,
      overview,
      tenants,
      outcomes,
      stories: createOrderStories({ pool, jobs, outcomes }, BASE_PATH),
      sessions: createDashboardSessions(redis, { prefix, ttlSeconds: 3_600 }),
      credentials: createCredentials(config, logger),
      loginLimiter: createLoginLimiter(redis, { prefix, points: 100, windowSeconds: 60 }),
      audit: createAuditLog(pool),
      deadLetters: createDeadLetterStore(pool),
      actions: createDeadLetterActions({
        pool,
        redis,
        queuePrefix: prefix,
        redrive: redriver.redrive,
        modules,
        logger,
      }),
    },
    {
      boards: createBoards(queues),
      loginFailures: createLoginFailures(redis, { prefix, windowSeconds: 60, retainSeconds: 3_600 }),
      ready: async () => undefined,
      search,
    },
  );
  const server = await new Promise<ReturnType<typeof serve>>((resolve) => {
    const s = serve({ fetch: app.fetch, port: 0, hostname: '127.0.0.1' }, () => resolve(s));
  });
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  closeDashboard = async () => {
    (server as unknown as { closeAllConnections(): void }).closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
    await bulkRunner.stop();
    await search.close?.();
    await overview.close();
    await tenants.close();
    await redriver.close();
    for (const q of queues) await q.close().catch(() => undefined);
  };
}

async function newContext(): Promise<BrowserContext> {
  const context = await browser.newContext({ viewport: { width: 1600, height: 1000 } });
  contexts.push(context);
  return context;
}

async function placeOrder(customerId: string): Promise<string> {
  const res = await request(`${platform.url}/v1/orders`, {
    method: 'POST',
    json: sampleOrder({ customerId }),
  });
  expect(res.status).toBe(202);
  return res.body.orderId as string;
}

/** A decided order in the write model, as the order worker writes it. */
async function decidedOrder(customerId: string, status: string, reason: string | null): Promise<string> {
  const id = randomUUID();
  await query(
    `INSERT INTO orders (order_id, customer_id, currency, total_cents, items, status, reason, attempts, correlation_id,
                         accepted_at, accepted_by, tenant)
     VALUES ($1, $2, 'EUR', 2500, '[{"sku":"sku-1","quantity":2,"unitPriceCents":1250}]', $3, $4, 1, $5, now(), 'dev', 'dev')`,
    [id, customerId, status, reason, `corr-${id}`],
  );
  return id;
}

/** A dead-lettered order: its write-model row and its dead letter, as the order worker leaves them. */
async function deadLetteredOrder(customerId: string): Promise<string> {
  const id = await decidedOrder(customerId, 'dead_lettered', 'ledger offline');
  const job = {
    orderId: id,
    correlationId: `corr-${id}`,
    acceptedAt: new Date().toISOString(),
    acceptedBy: 'dev',
    tenant: 'dev',
    order: sampleOrder({ customerId }),
  };
  await createPgDeadLetterSink(platform.rt.pool).record({
    id: `bullmq-orders-${id}`,
    transport: 'bullmq',
    origin: OrdersQueues.commands,
    kind: 'command',
    messageKey: id,
    payload: Buffer.from(JSON.stringify(job)),
    headers: { 'job-name': 'place-order' },
    error: 'ledger offline',
    stack: null,
    attempts: 3,
    correlationId: job.correlationId,
    subjectId: id,
    firstFailedAt: null,
    failedAt: new Date(),
  });
  return id;
}

async function searchFor(page: Page, fill: Record<string, string>, statuses: string[] = []): Promise<void> {
  await page.goto(`${base}/dashboard/search`);
  for (const [name, value] of Object.entries(fill)) {
    if (name === 'module') await page.getByTestId('filter-module').selectOption(value);
    else await page.getByTestId(`filter-${name}`).fill(value);
  }
  for (const s of statuses) await page.getByTestId(`filter-status-${s}`).check();
  await page.getByTestId('search-submit').click();
  await page.waitForURL(/\/dashboard\/search\?/);
}

const resultIds = (page: Page) =>
  page.getByTestId('result').evaluateAll((rows) => rows.map((r) => r.getAttribute('data-id')));

beforeAll(async () => {
  platform = await startPlatform(
    testConfig({ DASHBOARD_USER: ADMIN.user, DASHBOARD_PASSWORD: ADMIN.password }),
    { workers: ['outbox', 'projections'] },
  );
  await startConsole();
  browser = await launchBrowser();
}, 180_000);

afterAll(async () => {
  for (const c of contexts) await c.close().catch(() => undefined);
  await browser?.close();
  await closeDashboard?.();
  await platform?.close();
});

describe('the console search page in a browser', () => {
  it('filters, opens a story, cancels a pending command and bulk-redrives after a confirmation, asking no other origin', async () => {
    const pending = [
      await placeOrder('cust-pending'),
      await placeOrder('cust-pending'),
      await placeOrder('cust-pending'),
    ];
    const done = await decidedOrder('cust-done', 'completed', null);
    const rejected = await decidedOrder('cust-done', 'rejected', 'payment declined: card expired');
    const dead = [await deadLetteredOrder('cust-dead'), await deadLetteredOrder('cust-dead')];

    const context = await newContext();
    const watch = watchRequests(context, base);
    const page = await signIn(context, base, ADMIN);

    // From the top bar.
    await page.getByTestId('top-bar').getByRole('link', { name: 'Search', exact: true }).click();
    await page.waitForURL(`${base}/dashboard/search`);
    expect(await page.locator('main h1').first().textContent()).toContain('Search');

    // Filter: one customer's pending commands (from Redis), newest first.
    await searchFor(page, { subject: 'cust-pending' }, ['queued']);
    expect(new Set(await resultIds(page))).toEqual(new Set(pending));
    const statuses = await page.getByTestId('status').allTextContents();
    expect(statuses).toEqual(['queued', 'queued', 'queued']);

    // Filter: status and error code (decided, from PostgreSQL).
    await searchFor(page, { subject: 'cust-done', errorCode: 'payment declined' });
    expect(await resultIds(page)).toEqual([rejected]);
    await searchFor(page, { subject: 'cust-done' }, ['completed']);
    expect(await resultIds(page)).toEqual([done]);

    // Open a result: its story.
    await page.getByTestId('story-link').first().click();
    await page.waitForURL(`${base}/dashboard/orders/${done}`);
    expect(await textOf(page, 'order-status')).toBe('completed');

    // Cancel one pending command: gone from the queue, `cancelled` in the write model, said so.
    await searchFor(page, { subject: 'cust-pending' }, ['queued']);
    const victim = (await resultIds(page))[0]!;
    await page.getByTestId(`cancel-${victim}`).click();
    await page.waitForURL(/notice=/);
    expect(await textOf(page, 'notice')).toContain(`Cancelled orders ${victim}`);
    expect(new Set(await resultIds(page))).toEqual(new Set(pending.filter((id) => id !== victim)));
    const [row] = await query<{ status: string }>('SELECT status FROM orders WHERE order_id = $1', [victim]);
    expect(row?.status).toBe('cancelled');
    await searchFor(page, { subject: 'cust-pending' }, ['cancelled']);
    expect(await resultIds(page)).toEqual([victim]);

    // Bulk redrive: the dead-lettered orders of this search, dry run first.
    await searchFor(page, { module: 'orders' }, ['dead_lettered']);
    expect(new Set(await resultIds(page))).toEqual(new Set(dead));
    await page.getByTestId('bulk-action').selectOption('redrive');
    await page.getByTestId('bulk-dry-run').click();
    await page.waitForURL(/\/dashboard\/search\/bulk\?/);
    expect(await textOf(page, 'bulk-count')).toContain('touches 2 items');
    await page.getByTestId('bulk-confirm').click();
    await page.waitForURL(/\/dashboard\/search\/bulk\/[0-9a-f-]{36}$/);
    const bulkId = page.url().split('/').pop()!;
    await eventually(
      async () => {
        await page.reload();
        return (await textOf(page, 'bulk-status')) === 'completed';
      },
      { what: 'the bulk redrive to complete', timeoutMs: 30_000, intervalMs: 250 },
    );
    expect(await textOf(page, 'bulk-expected')).toBe('2');
    expect(await textOf(page, 'bulk-counts')).toBe('2 / 0 / 0');
    const redriven = await query<{ status: string }>(
      `SELECT status FROM dead_letters WHERE subject_id = ANY($1::text[])`,
      [dead],
    );
    expect(redriven.map((r) => r.status)).toEqual(['redriven', 'redriven']);
    // Audited: who, the exact query and the counts.
    const audits = await query<{ actor: string; detail: unknown }>(
      `SELECT actor, detail FROM audit_log WHERE target = $1 OR detail::text LIKE '%' || $1 || '%'`,
      [bulkId],
    );
    expect(audits.some((a) => a.actor === ADMIN.user)).toBe(true);

    expect(watch.foreign).toEqual([]);
    expect(watch.cspViolations).toEqual([]);
  });

  it('explains a bad filter instead of failing', async () => {
    const page = await signIn(await newContext(), base, ADMIN);
    const res = await page.goto(`${base}/dashboard/search?from=yesterday&traceId=xyz`);
    expect(res?.status()).toBe(400);
    expect(await textOf(page, 'notice')).toMatch(/from: not a date.*trace id/);
  });
});
