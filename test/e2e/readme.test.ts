import { execFileSync, spawn } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../shared/config/config.ts';
import { eventually, isolatedEnv } from '../support/env.ts';
import { request } from '../support/http.ts';
import { cleanup } from '../support/platform.ts';
import { MODULES } from '../../modules/registry.ts';

const root = fileURLToPath(new URL('../../', import.meta.url));
/** The README and every guide under docs/: each file's examples run as one script, in order. */
const documents = [
  'README.md',
  ...readdirSync(`${root}docs`)
    .filter((f) => f.endsWith('.md'))
    .map((f) => `docs/${f}`),
];
const text = (file: string) => readFileSync(`${root}${file}`, 'utf8');
/** The shell blocks a document marks as runnable examples (`<!-- example -->` before the fence), in order. */
const examplesOf = (file: string) =>
  [...text(file).matchAll(/<!-- example -->\s*```bash\n([\s\S]*?)```/g)].map((m) => m[1]!);
/** Every shell block that talks to the API, marked or not. */
const apiBlocksOf = (file: string) =>
  [...text(file).matchAll(/```bash\n([\s\S]*?)```/g)]
    .map((m) => m[1]!)
    .filter((b) => /curl[^\n]*localhost:3000/.test(b));

describe('README and guides', () => {
  const env = isolatedEnv({ DASHBOARD_PORT: '0', METRICS_PORT: '0', LOG_LEVEL: 'info' });
  let url = '';
  let child: ReturnType<typeof spawn>;
  const lines: string[] = [];

  beforeAll(async () => {
    // The README's run command (`npm start` runs exactly this script), on an isolated schema and port.
    child = spawn('bash', ['scripts/start.sh'], {
      cwd: root,
      env: { ...process.env, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    child.stdout!.on('data', (d: Buffer) => lines.push(...d.toString().split('\n')));
    child.stderr!.on('data', (d: Buffer) => lines.push(...d.toString().split('\n')));
    const port = await eventually(
      () => {
        if (child.exitCode !== null) throw new Error(`npm start exited:\n${lines.slice(-20).join('\n')}`);
        const line = lines.find((l) => l.includes('"api listening"'));
        return line ? (JSON.parse(line) as { port: number }).port : undefined;
      },
      { timeoutMs: 90_000, what: 'npm start to listen' },
    );
    url = `http://127.0.0.1:${port}`;
    await eventually(async () => (await fetch(`${url}/readyz`)).status === 200);
  });
  afterAll(async () => {
    if (child && child.exitCode === null) {
      const exited = new Promise((r) => child.once('exit', r));
      child.kill('SIGTERM');
      await exited;
    }
    await cleanup(loadConfig(env, { modules: MODULES }));
  });

  /** Runs a document's examples as printed, one script, against the platform started above. */
  const run = (file: string) => {
    // Only addition: a newline after each response body so outputs do not run together.
    const script =
      `set -euo pipefail\ncurl() { command curl "$@"; echo; }\n${examplesOf(file).join('\n')}`.replaceAll(
        'http://localhost:3000',
        url,
      );
    return execFileSync('bash', ['-c', script], { encoding: 'utf8', timeout: 60_000 });
  };

  it('every shell block that calls the API is a runnable example', () => {
    for (const file of documents) {
      const marked = examplesOf(file);
      expect(
        apiBlocksOf(file).filter((b) => !marked.includes(b)),
        file,
      ).toEqual([]);
    }
    expect(examplesOf('README.md').length).toBeGreaterThanOrEqual(3);
    expect(examplesOf('docs/producers.md').length).toBeGreaterThanOrEqual(8);
  });

  it("the README's tour works as printed against `npm start`", async () => {
    const out = run('README.md');
    expect(out).toMatch(/HTTP\/1\.1 202 Accepted/);
    expect(out).toMatch(/"customerId":"c-tour".*"status":"completed"/);
    expect(out).toMatch(/"refundId":"[0-9a-f-]{36}".*"status":"completed"/);
    expect(out).toContain('"refundedCents":500');
  });

  it('every other guide with examples works as printed', () => {
    const others = documents.filter(
      (f) => !['README.md', 'docs/producers.md', 'docs/operators.md'].includes(f) && examplesOf(f).length > 0,
    );
    for (const file of others) run(file);
    expect(run('docs/operators.md')).toContain('"deadLetters"');
  });

  it("the producers' guide works as printed against `npm start`", async () => {
    const out = run('docs/producers.md');
    expect(out).toMatch(/HTTP\/1\.1 202 Accepted/);
    expect(out).toMatch(/x-correlation-id: checkout-7f3a9c21/i);
    expect(out).toContain('"status":"queued"');
    expect(out).toContain('"code":"request.invalid"');
    expect(out).toContain('"orderCount"');
    expect(out).toMatch(/"refundId":"[0-9a-f-]{36}","orderId":"[0-9a-f-]{36}","status":"queued"/);
    // Results without polling: a wait answered with the final state, the lifecycle stream to its end.
    expect(out).toMatch(/HTTP\/1\.1 201 Created/);
    expect(out).toMatch(/preference-applied: wait=10/i);
    expect(out).toContain('event: completed');
    expect(out).toContain('id: projected');
    // Batches and webhooks.
    expect(out).toMatch(/"batchId":"[0-9a-f-]{36}"/);
    expect(out).toMatch(/"module":"orders","total":2/);
    expect(out).toMatch(/"secret":"whsec_/);
    expect(out).toMatch(/^204$/m);
    const orderId = /^([0-9a-f-]{36})$/m.exec(out)?.[1];
    expect(orderId).toBeDefined();
    // The example order flows through the whole pipeline.
    await eventually(async () => (await request(`${url}/v1/orders/${orderId}`)).body.status === 'completed');
  });
});
