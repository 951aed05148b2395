import { Worker } from 'node:worker_threads';
import type { OpenLoopOptions, OpenLoopResult } from './open-loop.ts';

/** {@link OpenLoopOptions} that can cross a thread boundary: a fixed body, ids returned in the result. */
export type ThreadedOpenLoopOptions = Omit<OpenLoopOptions, 'body' | 'acceptedIds'> & { body?: string };

/**
 * Runs the open-loop generator on a worker thread of its own: its timers and sockets then never wait
 * behind the bench's main thread (the process monitor reads /proc synchronously four times a second),
 * so the generator's lag measures the machine, not the bench. Accepted ids come back with the result.
 * @example const { result, acceptedIds } = await runOpenLoopInThread({ urls, ratePerS: 500, durationS: 5 });
 */
export async function runOpenLoopInThread(
  options: ThreadedOpenLoopOptions,
): Promise<{ result: OpenLoopResult; acceptedIds: string[] }> {
  // Node 20 does not carry tsx's loader hooks into worker threads: the thread registers them itself.
  const entry = JSON.stringify(new URL('./open-loop-worker.ts', import.meta.url).href);
  const worker = new Worker(
    `import('tsx/esm/api').then(({ register }) => { register(); return import(${entry}); })`,
    { eval: true, workerData: options },
  );
  try {
    return await new Promise((resolve, reject) => {
      worker.once('message', resolve);
      worker.once('error', reject);
      worker.once('exit', (code) => reject(new Error(`open-loop thread exited (${code}) without a result`)));
    });
  } finally {
    await worker.terminate();
  }
}
