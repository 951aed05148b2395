import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { chromium, type Browser, type BrowserContext, type Page, type Request } from 'playwright-core';
import { expect } from 'vitest';

/** Debian's Chromium (scripts/install-chromium.sh); Playwright never downloads a browser of its own. */
export const CHROMIUM = '/usr/bin/chromium';
const ROOT = fileURLToPath(new URL('../../', import.meta.url));

export interface Operator {
  user: string;
  password: string;
}

/**
 * A headless Chromium that can reach loopback only: no name resolves but loopback, and anything else
 * goes to a proxy on a closed loopback port (Chromium never proxies loopback itself). A page that
 * asks another origin for anything fails that request, and {@link watchRequests} records it.
 */
export async function launchBrowser(): Promise<Browser> {
  if (!existsSync(CHROMIUM))
    execFileSync('bash', [`${ROOT}scripts/install-chromium.sh`], { stdio: 'inherit' });
  return chromium.launch({
    executablePath: CHROMIUM,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      '--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1, EXCLUDE localhost',
      '--proxy-server=http://127.0.0.1:9',
    ],
  });
}

/** Every request a context makes to an origin other than `base`, and every CSP violation its pages report. */
export interface RequestWatch {
  foreign: string[];
  cspViolations: string[];
}

export function watchRequests(context: BrowserContext, base: string): RequestWatch {
  const origin = new URL(base).origin;
  const watch: RequestWatch = { foreign: [], cspViolations: [] };
  context.on('request', (r: Request) => {
    const url = r.url();
    if (!url.startsWith('data:') && new URL(url).origin !== origin) watch.foreign.push(url);
  });
  context.on('console', (m) => {
    if (/Content Security Policy/i.test(m.text())) watch.cspViolations.push(m.text());
  });
  return watch;
}

/** Signs in through the form and waits for the landing page. */
export async function signIn(context: BrowserContext, base: string, who: Operator): Promise<Page> {
  const page = await context.newPage();
  await page.goto(`${base}/dashboard`);
  expect(new URL(page.url()).pathname).toBe('/dashboard/login');
  await page.getByLabel('User name').fill(who.user);
  await page.getByLabel('Password').fill(who.password);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.waitForURL(`${base}/dashboard`);
  return page;
}

/** The text of an element as rendered (whitespace collapsed), waiting until it is there. */
export async function textOf(page: Page, testId: string, timeout = 15_000): Promise<string> {
  return (await page.getByTestId(testId).first().innerText({ timeout })).trim();
}
