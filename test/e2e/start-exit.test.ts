import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { afterEach, expect, it } from 'vitest';
import { loadConfig } from '../../shared/config/config.ts';
import { eventually, isolatedEnv } from '../support/env.ts';
import { cleanup } from '../support/platform.ts';
import { MODULES } from '../../modules/registry.ts';

// Point 10 of issue #12: `npm start` stopped by SIGTERM to its whole process group (what a terminal's
// Ctrl-C, `kill -- -PGID` or a supervisor does) shuts the platform down cleanly and exits 0 — npm,
// the shell it runs the script with and node all get the signal.

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const env = isolatedEnv({ LOG_LEVEL: 'info' });
let pgid: number | undefined;

afterEach(async () => {
  if (pgid !== undefined) {
    try {
      process.kill(-pgid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
  await cleanup(loadConfig(env, { modules: MODULES }));
});

it('exits 0 with "shutdown complete" after SIGTERM to its process group', async () => {
  const child = spawn('npm', ['start'], {
    cwd: ROOT,
    env: { ...process.env, ...env },
    detached: true, // its own process group, like a terminal's foreground job
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const group = child.pid!;
  pgid = group;
  let output = '';
  child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString('utf8')));
  child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString('utf8')));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once('exit', (code, signal) => resolve({ code, signal })),
  );

  await eventually(
    async () => {
      if (child.exitCode !== null) throw new Error(`npm start exited:\n${output}`);
      const port = /"port":(\d+),"host":"[^"]*","msg":"api listening"/.exec(output)?.[1];
      return port !== undefined && (await fetch(`http://127.0.0.1:${port}/readyz`)).status === 200;
    },
    { timeoutMs: 90_000, what: 'npm start to be ready' },
  );

  process.kill(-group, 'SIGTERM');
  const { code, signal } = await exited;
  pgid = undefined;
  expect({ code, signal }, output.slice(-2_000)).toEqual({ code: 0, signal: null });
  expect(output).toContain('"msg":"shutdown complete"');
}, 120_000);
