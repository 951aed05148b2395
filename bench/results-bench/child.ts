import { fork, type ChildProcess } from 'node:child_process';

/** A helper process of the results bench, spoken to over IPC one command at a time. */
export interface Child {
  readonly pid: number;
  /** Sends `message` and resolves with the next message of type `expect` (rejects on `error`, exit, timeout). */
  ask<T>(message: Record<string, unknown>, expect: string, timeoutMs?: number): Promise<T>;
  close(): Promise<void>;
}

/**
 * Forks `file` (TypeScript, through tsx) with `flags`, and resolves once it sent `{ type: ready }`
 * (or, with `readyType`, that message: e.g. the receiver's `listening`) with the child and that message.
 */
export async function startChild<R>(
  file: URL,
  flags: readonly string[],
  readyType = 'ready',
): Promise<{ child: Child; ready: R }> {
  const proc: ChildProcess = fork(file, [], {
    execArgv: ['--import', 'tsx', ...flags],
    stdio: ['ignore', 'ignore', 'pipe', 'ipc'],
  });
  const tail: string[] = [];
  proc.stderr?.on('data', (c: Buffer) => {
    tail.push(...c.toString('utf8').split('\n').filter(Boolean));
    if (tail.length > 50) tail.splice(0, tail.length - 50);
  });
  const next = <T>(expect: string, timeoutMs: number): Promise<T> =>
    new Promise((resolve, reject) => {
      const done = () => {
        clearTimeout(timer);
        proc.off('message', onMessage);
        proc.off('exit', onExit);
      };
      const onMessage = (m: { type?: string; error?: string }) => {
        if (m.type === expect) {
          done();
          resolve(m as T);
        } else if (m.type === 'error') {
          done();
          reject(new Error(`${file.pathname}: ${m.error}`));
        }
      };
      const onExit = (code: number | null) => {
        done();
        reject(new Error(`${file.pathname} exited (${code}): ${tail.slice(-10).join(' | ')}`));
      };
      const timer = setTimeout(() => {
        done();
        reject(new Error(`${file.pathname}: no ${expect} within ${timeoutMs} ms`));
      }, timeoutMs);
      proc.on('message', onMessage);
      proc.once('exit', onExit);
    });
  const ready = await next<R>(readyType, 30_000);
  const child: Child = {
    pid: proc.pid!,
    ask<T>(message: Record<string, unknown>, expect: string, timeoutMs = 60_000) {
      const answer = next<T>(expect, timeoutMs);
      proc.send(message);
      return answer;
    },
    async close() {
      if (proc.exitCode !== null || proc.signalCode !== null) return;
      const exited = new Promise((r) => proc.once('exit', r));
      proc.kill('SIGTERM');
      await exited;
    },
  };
  return { child, ready };
}
