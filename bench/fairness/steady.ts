import { Worker } from 'node:worker_threads';
import type { OpenLoopResult } from '../open-loop.ts';

/** One steady tenant: `ratePerS` single-order POSTs at evenly spaced times until stopped. */
export interface SteadyOptions {
  url: string;
  /** The tenant's API key (its secret, sent as `Authorization: Bearer`). */
  secret: string;
  /** Customer ids are `<tag>-<slice>-<index>`. */
  tag: string;
  ratePerS: number;
  /** Schedule length of each slice, seconds; the producer stops at a slice's end. */
  sliceS: number;
  orderSize: number;
}

/** One slice's open-loop run; request i was scheduled at `startedAt + 5 + i × 1000 / rate` (ms, see bench/open-loop.ts). */
export interface SteadySlice {
  slice: number;
  startedAt: number;
  result: OpenLoopResult;
}

export interface SteadyResult {
  slices: SteadySlice[];
  acceptedIds: string[];
}

/** The open-loop generator's t0 lies 5 ms after its `startedAt` (bench/open-loop.ts). */
const T0_AFTER_STARTED_MS = 5;

/** When request `index` of slice `slice` was scheduled (ms since the epoch), or undefined for an unknown slice. */
export function scheduledAt(
  slices: ReadonlyMap<number, number>,
  ratePerS: number,
  slice: number,
  index: number,
): number | undefined {
  const startedAt = slices.get(slice);
  return startedAt === undefined ? undefined : startedAt + T0_AFTER_STARTED_MS + (index * 1000) / ratePerS;
}

/** Parses a steady producer's customer id `<tag>-<slice>-<index>`. */
export function parseSteadyCustomer(
  customerId: string,
): { tag: string; slice: number; index: number } | undefined {
  const m = /^([a-z0-9]+)-(\d+)-(\d+)$/.exec(customerId);
  return m ? { tag: m[1]!, slice: Number(m[2]), index: Number(m[3]) } : undefined;
}

/**
 * Starts a steady producer on a worker thread of its own (its timers never wait behind the bench's
 * main thread, which posts the flood and polls PostgreSQL). `stop()` lets the running slice finish.
 * @example const b = startSteady({ url, secret, tag: 'b', ratePerS: 20, sliceS: 5, orderSize: 3 }); …; const r = await b.stop();
 */
export function startSteady(options: SteadyOptions): { stop(): Promise<SteadyResult> } {
  // Node 20 does not carry tsx's loader hooks into worker threads: the thread registers them itself.
  const entry = JSON.stringify(new URL('./steady-worker.ts', import.meta.url).href);
  const worker = new Worker(
    `import('tsx/esm/api').then(({ register }) => { register(); return import(${entry}); })`,
    { eval: true, workerData: options },
  );
  const result = new Promise<SteadyResult>((resolve, reject) => {
    worker.once('message', resolve);
    worker.once('error', reject);
    worker.once('exit', (code) => reject(new Error(`steady producer ${options.tag} exited (${code}) early`)));
  });
  // Not awaited until stop(): a failure surfaces there.
  result.catch(() => undefined);
  return {
    async stop() {
      worker.postMessage('stop');
      try {
        return await result;
      } finally {
        await worker.terminate();
      }
    },
  };
}
