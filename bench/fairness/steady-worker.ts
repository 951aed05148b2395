// The worker-thread side of bench/fairness/steady.ts: one tenant's open-loop producer, slice after slice.
import { parentPort, workerData } from 'node:worker_threads';
import { orderBody } from '../load.ts';
import { runOpenLoop } from '../open-loop.ts';
import type { SteadyOptions, SteadySlice } from './steady.ts';

const o = workerData as SteadyOptions;
const slices: SteadySlice[] = [];
const acceptedIds: string[] = [];
const running: Promise<void>[] = [];
let stopping = false;
let timer: NodeJS.Timeout | undefined;
const base = performance.now();
let next = 0;

const finish = async () => {
  await Promise.all(running);
  slices.sort((a, b) => a.slice - b.slice);
  parentPort?.postMessage({ slices, acceptedIds });
};

// Slice k's schedule starts at base + k × sliceS, whether or not slice k−1 has had all its answers:
// the requests stay evenly spaced across slice boundaries.
const startSlice = () => {
  if (stopping) return;
  const slice = next++;
  const ids: string[] = [];
  running.push(
    runOpenLoop({
      urls: [o.url],
      ratePerS: o.ratePerS,
      durationS: o.sliceS,
      path: '/v1/orders',
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${o.secret}` },
      // The customer id carries (slice, index): the write model then tells each order's scheduled time.
      body: (i) => JSON.stringify(orderBody(`${o.tag}-${slice}-${i}`, o.orderSize)),
      acceptedIds: ids,
      timeoutMs: 30_000,
      drainMs: 30_000,
      socketsPerTarget: 64,
    }).then((result) => {
      acceptedIds.push(...ids);
      slices.push({ slice, startedAt: result.startedAt, result });
    }),
  );
  timer = setTimeout(startSlice, Math.max(0, base + next * o.sliceS * 1000 - performance.now()));
};

parentPort?.on('message', (m) => {
  if (m !== 'stop' || stopping) return;
  stopping = true;
  clearTimeout(timer);
  void finish();
});
startSlice();
