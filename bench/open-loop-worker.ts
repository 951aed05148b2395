// The worker-thread side of bench/open-loop-thread.ts: runs one open-loop phase and posts its result.
import { parentPort, workerData } from 'node:worker_threads';
import { runOpenLoop } from './open-loop.ts';
import type { ThreadedOpenLoopOptions } from './open-loop-thread.ts';

const options = workerData as ThreadedOpenLoopOptions;
const acceptedIds: string[] = [];
const result = await runOpenLoop({ ...options, acceptedIds });
parentPort?.postMessage({ result, acceptedIds });
