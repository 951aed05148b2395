import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { demoEnv } from '../../scripts/demo.ts';
import { loadConfig } from '../../shared/config/config.ts';
import { eventually, isolatedEnv } from '../support/env.ts';
import { request } from '../support/http.ts';
import { cleanup } from '../support/platform.ts';
import { freePort } from '../support/redis-server.ts';
import { MODULES } from '../../modules/registry.ts';

const root = fileURLToPath(new URL('../../', import.meta.url));

/** The README's step 5: `env $(npm run -s demo -- --env) npm start`, then `npm run demo`, for a few seconds. */
describe('npm run demo', () => {
  let env: Record<string, string> = {};
  let paymentPort = 0;
  let url = '';
  let platform: ReturnType<typeof spawn>;
  const lines: string[] = [];

  beforeAll(async () => {
    paymentPort = await freePort();
    env = isolatedEnv({ ...demoEnv(paymentPort), LOG_LEVEL: 'info' });
    platform = spawn('bash', ['scripts/start.sh'], {
      cwd: root,
      env: { ...process.env, ...env },
      stdio: 'pipe',
    });
    platform.stdout!.on('data', (d: Buffer) => lines.push(...d.toString().split('\n')));
    platform.stderr!.on('data', (d: Buffer) => lines.push(...d.toString().split('\n')));
    const port = await eventually(
      () => {
        if (platform.exitCode !== null) throw new Error(`npm start exited:\n${lines.slice(-20).join('\n')}`);
        const line = lines.find((l) => l.includes('"api listening"'));
        return line ? (JSON.parse(line) as { port: number }).port : undefined;
      },
      { timeoutMs: 90_000, what: 'npm start to listen' },
    );
    url = `http://127.0.0.1:${port}`;
    await eventually(async () => (await fetch(`${url}/readyz`)).status === 200);
  });
  afterAll(async () => {
    if (platform && platform.exitCode === null) {
      const exited = new Promise((r) => platform.once('exit', r));
      platform.kill('SIGTERM');
      await exited;
    }
    await cleanup(loadConfig(env, { modules: MODULES }));
  });

  it('posts from several producers; declines, rejections, a refund, a batch and dead letters follow', async () => {
    const demo = spawn(
      'node',
      [
        '--import',
        'tsx',
        'scripts/demo.ts',
        '--minutes',
        '0.25',
        '--rate',
        '20',
        '--url',
        url,
        '--payment-port',
        String(paymentPort),
      ],
      { cwd: root, env: { ...process.env, ...env }, stdio: 'pipe' },
    );
    let out = '';
    demo.stdout!.on('data', (d: Buffer) => (out += d.toString()));
    demo.stderr!.on('data', (d: Buffer) => (out += d.toString()));
    const code = await new Promise<number | null>((r) => demo.once('exit', r));
    expect(code, out).toBe(0);
    expect(out).toMatch(/orders accepted from shop, marketplace, warehouse/);
    expect(out).toMatch(/posted a batch of 200 orders as warehouse/);
    expect(out).toMatch(/refund of order [0-9a-f-]{36}: (completed|queued|processing)/);
    expect(out).toMatch(/[1-9]\d* payment calls answered/);
    expect(out).toContain('payment declined');
    const foreignJobId = /job id (demo-foreign-[a-z0-9]+)/.exec(out)?.[1];
    const poison = /posted order ([0-9a-f-]{36}): its payment request keeps being refused/.exec(out)?.[1];
    expect(foreignJobId).toBeDefined();
    expect(poison).toBeDefined();
    // The malformed job and the order whose payment is refused both end as dead letters.
    await eventually(async () => {
      const res = await request<{ deadLetters: { messageKey: string }[] }>(
        `${url}/v1/dead-letters?status=pending`,
      );
      const keys = res.body.deadLetters.map((d) => d.messageKey);
      return keys.includes(foreignJobId!) && keys.includes(poison!);
    });
    expect((await request(`${url}/v1/orders/${poison}`)).body.status).toBe('dead_lettered');
  });
});
