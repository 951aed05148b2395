import type { ChildProcess } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';

/**
 * What the test support's private engines (Kafka, RabbitMQ, …) share: is a child still running, the end
 * of its log for an error message, and a cleanup that runs if the test process exits with them still up.
 */

export const alive = (child: ChildProcess | undefined): boolean =>
  child !== undefined && child.exitCode === null && child.signalCode === null;

/** The last `lines` of `file`, framed for an error message ('' when there is nothing). */
export function tail(file: string, lines: number): string {
  if (!existsSync(file)) return '';
  const text = readFileSync(file, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
  return text ? `--- last ${lines} lines of ${file} ---\n${text}\n` : '';
}

const cleanups = new Set<() => void>();
let hooked = false;

/**
 * Runs `cleanup` (synchronously) if the test process exits while it is registered — a failed or
 * aborted run must not leave a broker or its temp dir behind. Returns the unregister function.
 */
export function onTestExit(cleanup: () => void): () => void {
  if (!hooked) {
    hooked = true;
    process.once('exit', () => {
      for (const fn of cleanups) fn();
    });
  }
  cleanups.add(cleanup);
  return () => cleanups.delete(cleanup);
}
