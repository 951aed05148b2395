import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import { loadConfig } from '../../shared/config/config.ts';
import { eventually, isolatedEnv } from '../support/env.ts';
import { cleanup } from '../support/platform.ts';
import { MODULES } from '../../modules/registry.ts';

// Issue #20: `npm run api|workers|dashboard` ran node under `sh -c` without `exec`. A SIGTERM to npm's
// own process (what a supervisor that tracks npm's pid sends) was forwarded to the shell, which died
// of it; npm exited 143 and node — orphaned — kept listening. Now each script `exec`s node: npm's
// SIGTERM reaches node, which shuts down gracefully, and npm exits with node's code. Only npm's pid is
// signalled here (not its process group): that is the case the shell used to break.

const ROOT = fileURLToPath(new URL('../../', import.meta.url));

interface Started {
  env: Record<string, string>;
  /** npm's process group (detached), so whatever it left behind can be cleaned up. */
  group: number;
}
const started: Started[] = [];

afterEach(async () => {
  for (const { env, group } of started.splice(0)) {
    try {
      process.kill(-group, 'SIGKILL'); // an orphaned node stays in npm's group
    } catch {
      // already gone
    }
    await cleanup(loadConfig(env, { modules: MODULES }));
  }
});

const alive = (pid: number): boolean => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

// Each serves /readyz on the port its "… listening" log line names.
const scripts = [
  { script: 'api', env: {}, listening: 'api listening' },
  { script: 'workers', env: { WORKER_KINDS: 'outbox' }, listening: 'metrics server listening' },
  { script: 'dashboard', env: { DASHBOARD_PASSWORD: 'script-signals' }, listening: 'dashboard listening' },
] as const;
const path = '/readyz';

describe('npm scripts hand signals to node', () => {
  for (const { script, env: extra, listening } of scripts) {
    it(`npm run ${script}: SIGTERM to npm stops node (port closed, no orphan) and npm exits with node's code`, async () => {
      const env = isolatedEnv({ LOG_LEVEL: 'info', ...extra });
      const child = spawn('npm', ['run', '--silent', script], {
        cwd: ROOT,
        env: { ...process.env, ...env },
        detached: true,
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      started.push({ env, group: child.pid! });
      let output = '';
      child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString('utf8')));
      child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString('utf8')));
      const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
        child.once('exit', (code, signal) => resolve({ code, signal })),
      );

      const { port, pid } = await eventually(
        async () => {
          if (child.exitCode !== null) throw new Error(`npm run ${script} exited:\n${output}`);
          const line = output.split('\n').find((l) => l.includes(`"msg":"${listening}"`));
          if (!line) return undefined;
          const { port, pid } = JSON.parse(line) as { port: number; pid: number };
          const res = await fetch(`http://127.0.0.1:${port}${path}`);
          await res.arrayBuffer();
          return res.status === 200 ? { port, pid } : undefined;
        },
        { timeoutMs: 60_000, what: `npm run ${script} to serve` },
      );
      expect(pid).not.toBe(child.pid); // node is npm's child, not npm itself

      process.kill(child.pid!, 'SIGTERM');
      const { code, signal } = await exited;
      const tail = output.slice(-2_000);
      // npm has exited: node must be gone with it, and its port closed — not an orphan still serving.
      expect(alive(pid), `node (pid ${pid}) outlived npm:\n${tail}`).toBe(false);
      await expect(fetch(`http://127.0.0.1:${port}${path}`)).rejects.toThrow();
      expect(output).toContain('"msg":"shutdown complete"');
      const exitCode = /"exitCode":(\d+),"msg":"shutdown complete"/.exec(output)?.[1];
      expect({ code, signal }, tail).toEqual({ code: Number(exitCode), signal: null });
      expect(code).toBe(0);
    }, 120_000);
  }
});
