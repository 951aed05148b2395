import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { eventually } from './env.ts';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));

export interface Proc {
  child: ChildProcess;
  /** Every line the process wrote to stdout (pino JSON) and stderr. */
  lines: string[];
  /** The port it listens on, read from its "api listening" log line (APIs only). */
  port?: number;
  /** Resolves with the exit code when the process exits. */
  exited: Promise<number | null>;
  kill(signal?: NodeJS.Signals): Promise<number | null>;
}

/** The tracing register, as the npm scripts load it (`imports` of {@link startProcess}). */
export const TRACING_REGISTER = './shared/observability/tracing/register.ts';

/**
 * Starts `entry` (e.g. `api/main.ts`) as a real process with `env`; logs must be JSON at info level.
 * `imports` are loaded after tsx, before the entry (e.g. {@link TRACING_REGISTER}).
 */
export function startProcess(
  entry: string,
  env: Record<string, string>,
  imports: readonly string[] = [],
): Proc {
  // node --import tsx: one process, so signals (and kill -9) hit the real worker, not a wrapper.
  const args = ['--import', 'tsx', ...imports.flatMap((i) => ['--import', i]), entry];
  const child = spawn(process.execPath, args, {
    cwd: ROOT,
    env: {
      ...process.env,
      ...env,
      LOG_LEVEL: env.LOG_LEVEL === 'silent' || !env.LOG_LEVEL ? 'info' : env.LOG_LEVEL,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const lines: string[] = [];
  const proc: Proc = {
    child,
    lines,
    exited: new Promise((resolve) => child.once('exit', (code) => resolve(code))),
    async kill(signal = 'SIGTERM') {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      return proc.exited;
    },
  };
  let buffer = '';
  const onData = (chunk: Buffer) => {
    buffer += chunk.toString('utf8');
    const parts = buffer.split('\n');
    buffer = parts.pop() ?? '';
    for (const line of parts) {
      lines.push(line);
      if (proc.port === undefined && line.includes('"api listening"')) {
        proc.port = (JSON.parse(line) as { port: number }).port;
      }
    }
  };
  child.stdout?.on('data', onData);
  child.stderr?.on('data', onData);
  return proc;
}

/** Starts an API-serving entry and waits until `/readyz` answers 200. */
export async function startServer(
  entry: string,
  env: Record<string, string>,
  timeoutMs = 30_000,
  imports: readonly string[] = [],
): Promise<Proc & { url: string }> {
  const proc = startProcess(entry, env, imports);
  await eventually(
    async () => {
      if (proc.child.exitCode !== null)
        throw new Error(`${entry} exited:\n${proc.lines.slice(-20).join('\n')}`);
      if (proc.port === undefined) return false;
      const res = await fetch(`http://127.0.0.1:${proc.port}/readyz`);
      return res.status === 200;
    },
    { timeoutMs, what: `${entry} to become ready` },
  );
  return Object.assign(proc, { url: `http://127.0.0.1:${proc.port}` });
}

/** Parsed pino lines of a process. */
export function logRecords(proc: Proc): Record<string, unknown>[] {
  return proc.lines.flatMap((l) => {
    try {
      return [JSON.parse(l) as Record<string, unknown>];
    } catch {
      return [];
    }
  });
}
