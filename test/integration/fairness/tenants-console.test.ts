import { Queue } from 'bullmq';
import type { Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startDashboard } from '../../../dashboard/server.ts';
import { OrdersQueues, PLACE_ORDER_JOB } from '../../../modules/orders/queue.ts';
import { createFairQueue, type FairQueue } from '../../../shared/fairness/fair-queue.ts';
import type { Tenant, TenantPolicy } from '../../../shared/fairness/tenants.ts';
import { queueOptions } from '../../../shared/queue/names.ts';
import { bootstrap, type Runtime } from '../../../shared/runtime/bootstrap.ts';
import { launchBrowser, signIn, textOf, watchRequests, type Operator } from '../../support/browser.ts';
import { testConfig } from '../../support/env.ts';
import { cleanup } from '../../support/platform.ts';
import { MODULES } from '../../../modules/registry.ts';

// The console's Tenants page in a real headless Chromium, against a dashboard on real Redis and
// PostgreSQL, over a fair queue filled the way the API fills it (admit, then add held jobs delayed).
const HOLD_MS = 7 * 86_400_000;
const ADMIN: Operator = { user: 'tenants-admin', password: 'tenants-console-secret' };
const config = testConfig({ DASHBOARD_USER: ADMIN.user, DASHBOARD_PASSWORD: ADMIN.password });
const tenant = (id: string, p: Partial<TenantPolicy> = {}): Tenant => ({
  id,
  policy: { weight: 1, maxInFlight: 0, backlogQuota: 0, subTenants: false, ...p },
});

let rt: Runtime;
let browser: Browser;
let base: string;
let queue: Queue;

async function post(fair: FairQueue, t: Tenant, n: number): Promise<void> {
  const ids = Array.from({ length: n }, (_, i) => `${t.id}-${i}`);
  const admitted = await fair.admit(
    rt.redis,
    ids.map((id) => ({ id, tenant: t })),
  );
  await queue.addBulk(
    ids.map((id, i) => ({
      name: PLACE_ORDER_JOB,
      data: { tenant: t.id },
      opts: { jobId: id, ...(admitted[i] === 'held' ? { delay: HOLD_MS } : {}) },
    })),
  );
}

beforeAll(async () => {
  rt = await bootstrap(config, 'test', MODULES);
  base = `http://127.0.0.1:${(await startDashboard(rt)).port}`; // closed by the lifecycle
  const prefix = config.redis.queuePrefix;
  queue = new Queue(OrdersQueues.commands, queueOptions(rt.redis, prefix, OrdersQueues.commands));
  const fair = createFairQueue(OrdersQueues.commands, queue.toKey(''), { depth: 2, holdMs: HOLD_MS });
  // limited: one straight in, at its limit of 1 with 3 waiting (blocked); acme: one straight in
  // (the wait list is then full), 7 waiting.
  await post(fair, tenant('limited', { maxInFlight: 1 }), 4);
  await post(fair, tenant('acme', { weight: 3 }), 8);
  browser = await launchBrowser();
});
afterAll(async () => {
  await browser?.close();
  const keys = queue ? await rt.redis.keys(`${queue.toKey('')}fair:*`) : [];
  if (keys.length > 0) await rt.redis.del(...keys);
  await queue?.close();
  await rt?.lifecycle.close();
  await cleanup(config);
});

describe('the Tenants page', () => {
  it('lists who waits for a turn per command queue, from the top bar, asking no other origin', async () => {
    const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
    const watch = watchRequests(context, base);
    const page = await signIn(context, base, ADMIN);
    // The Overview's queue row sums it up and links here.
    expect(await textOf(page, 'tenants-orders')).toBe('tenants waiting: 2, largest backlog: acme (7)');

    await page.getByTestId('top-bar').getByRole('link', { name: 'Tenants', exact: true }).click();
    await page.waitForURL(`${base}/dashboard/tenants`);
    expect(await page.title()).toBe('Tenants · Conveyor');
    expect(await page.getByTestId('top-bar').locator('nav a[aria-current="page"]').textContent()).toBe(
      'Tenants',
    );
    const section = page.getByTestId('tenants-orders');
    expect(await textOf(page, 'summary-orders')).toMatch(/^10 commands waiting their turn across 2 tenants/);
    const rows = section.locator('tbody tr');
    expect(await rows.evaluateAll((trs) => trs.map((tr) => tr.getAttribute('data-tenant')))).toEqual([
      'acme',
      'limited',
    ]);
    const cells = async (t: string) =>
      (await section.locator(`tr[data-tenant="${t}"] > *`).allInnerTexts()).map((s) => s.trim());
    // tenant, waiting, oldest wait, in flight / limit, weight, throughput (first view: none yet), blocked
    expect(await cells('acme')).toEqual(['acme', '7', expect.stringMatching(/\d/), '—', '3', '—', '']);
    expect(await cells('limited')).toEqual([
      'limited',
      '3',
      expect.stringMatching(/\d/),
      '1 / 1',
      '1',
      '—',
      'at limit',
    ]);
    expect(watch.foreign).toEqual([]);
    expect(watch.cspViolations).toEqual([]);
    await context.close();
  });
});
