import { afterEach, describe, expect, it } from 'vitest';
import type { DispatchResult, FairQueue } from '../../../shared/fairness/fair-queue.ts';
import type { Redis } from '../../../shared/queue/redis.ts';
import { createFairDispatcher, type FairDispatcher } from '../../../workers/commands/fair-dispatch.ts';
import { createLogger } from '../../../shared/observability/logger.ts';
import { eventually } from '../../support/env.ts';

// The dispatcher's scheduling, against a FairQueue of our own whose answers the test chooses (the
// Lua itself runs on real Redis in test/integration/fairness).

interface Call {
  finished: string[];
  sweep: boolean;
  slots: number | undefined;
  finishing: number | undefined;
  answer: (r: DispatchResult | Error) => void;
}

function recordingQueue() {
  const calls: Call[] = [];
  let inFlight = 0;
  let maxInFlight = 0;
  const fair: FairQueue = {
    queue: 'orders',
    admit: () => Promise.resolve([]),
    backlog: () => Promise.reject(new Error('unused')),
    dispatch(_client, finished, options) {
      inFlight++;
      maxInFlight = Math.max(maxInFlight, inFlight);
      return new Promise<DispatchResult>((resolve, reject) => {
        calls.push({
          finished: [...finished],
          sweep: options?.sweep === true,
          slots: options?.worker?.slots,
          finishing: options?.finishing,
          answer: (r) => {
            inFlight--;
            if (r instanceof Error) reject(r);
            else resolve(r);
          },
        });
      });
    },
  };
  return { fair, calls, maxInFlight: () => maxInFlight };
}

const quiet = createLogger({ level: 'silent', service: 'test' });
const none: DispatchResult = { promoted: 0, waitingTenants: 0 };
let open: FairDispatcher | undefined;
afterEach(async () => {
  await open?.close(100);
  open = undefined;
});

function start(fair: FairQueue, intervalMs = 60_000) {
  open = createFairDispatcher({ fair, client: {} as Redis, logger: quiet }, { depth: 10, intervalMs });
  return open;
}

describe('the fair dispatcher', () => {
  it('tops up at once when it starts, then one call per turn for every job finished in it', async () => {
    const q = recordingQueue();
    const d = start(q.fair);
    await eventually(() => q.calls.length === 1);
    expect(q.calls[0]).toMatchObject({ finished: [], sweep: true });
    q.calls[0]!.answer(none);
    await new Promise((r) => setImmediate(r));
    d.finished('a');
    d.finished('b');
    d.finished('c');
    await eventually(() => q.calls.length === 2);
    expect(q.calls[1]).toMatchObject({ finished: ['a', 'b', 'c'], sweep: false });
  });

  it('keeps at most one call in flight; what finished meanwhile goes in the next one', async () => {
    const q = recordingQueue();
    const d = start(q.fair);
    await eventually(() => q.calls.length === 1);
    d.finished('a');
    d.finished('b');
    await new Promise((r) => setTimeout(r, 20));
    expect(q.calls).toHaveLength(1); // the first is still in flight
    q.calls[0]!.answer(none);
    await eventually(() => q.calls.length === 2);
    expect(q.calls[1]!.finished).toEqual(['a', 'b']);
    q.calls[1]!.answer(none);
    await new Promise((r) => setTimeout(r, 20));
    expect(q.calls).toHaveLength(2);
    expect(q.maxInFlight()).toBe(1);
  });

  it('calls again at once after promoting a full depth with tenants still waiting', async () => {
    const q = recordingQueue();
    start(q.fair);
    await eventually(() => q.calls.length === 1);
    q.calls[0]!.answer({ promoted: 10, waitingTenants: 2 });
    await eventually(() => q.calls.length === 2);
    q.calls[1]!.answer({ promoted: 4, waitingTenants: 2 });
    await new Promise((r) => setTimeout(r, 20));
    expect(q.calls).toHaveLength(2);
  });

  it('keeps the ids of a failed call for the next tick, which sweeps', async () => {
    const q = recordingQueue();
    const d = start(q.fair, 30);
    await eventually(() => q.calls.length === 1);
    q.calls[0]!.answer(none);
    await new Promise((r) => setImmediate(r));
    d.finished('a');
    await eventually(() => q.calls.length === 2);
    q.calls[1]!.answer(new Error('Redis is down'));
    await eventually(() => q.calls.length === 3); // the timer
    expect(q.calls[2]).toMatchObject({ finished: ['a'], sweep: true });
    q.calls[2]!.answer(none);
  });

  it('close waits for the call in flight, then gives back what finished since in one last call', async () => {
    const q = recordingQueue();
    const d = start(q.fair);
    await eventually(() => q.calls.length === 1);
    d.finished('a');
    let closed = false;
    const closing = d.close(5_000).then(() => (closed = true));
    await new Promise((r) => setTimeout(r, 20));
    expect(closed).toBe(false);
    q.calls[0]!.answer(none);
    await eventually(() => q.calls.length === 2);
    expect(q.calls[1]!.finished).toEqual(['a']);
    q.calls[1]!.answer(none);
    await closing;
    open = undefined;
  });

  it("registers the worker's slots with every call, and its close takes them away", async () => {
    const q = recordingQueue();
    const worker = { id: 'w', slots: 110, reserve: 10, ttlMs: 10_000 };
    const d = createFairDispatcher(
      { fair: q.fair, client: {} as Redis, logger: quiet },
      { depth: 10, intervalMs: 60_000, worker },
    );
    open = d;
    await eventually(() => q.calls.length === 1);
    expect(q.calls[0]).toMatchObject({ slots: 110 });
    q.calls[0]!.answer(none);
    d.finished('a');
    await eventually(() => q.calls.length === 2);
    expect(q.calls[1]).toMatchObject({ finished: ['a'], slots: 110 });
    q.calls[1]!.answer(none);
    // Nothing finished since: the last call still leaves.
    const closing = d.close(5_000);
    await eventually(() => q.calls.length === 3);
    expect(q.calls[2]).toMatchObject({ finished: [], slots: 0 });
    q.calls[2]!.answer(none);
    await closing;
    open = undefined;
  });

  it('finishing: one call of its own for the committed jobs, given up after its wait, never rejected', async () => {
    const q = recordingQueue();
    const worker = { id: 'w', slots: 110, reserve: 10, ttlMs: 10_000 };
    open = createFairDispatcher(
      { fair: q.fair, client: {} as Redis, logger: quiet },
      { depth: 10, intervalMs: 60_000, worker },
    );
    await eventually(() => q.calls.length === 1);
    // The start-up call is still in flight: the finishing one does not wait for it.
    const started = Date.now();
    await open.finishing(40, 50);
    expect(Date.now() - started).toBeLessThan(1_000);
    expect(q.calls[1]).toMatchObject({ finished: [], finishing: 40, slots: 110 });
    const failing = open.finishing(3);
    q.calls[2]!.answer(new Error('redis down'));
    await failing;
    q.calls[0]!.answer(none);
    q.calls[1]!.answer(none);
  });

  it('close gives up on a call that hangs (Redis unreachable) after its wait', async () => {
    const q = recordingQueue();
    const d = start(q.fair);
    await eventually(() => q.calls.length === 1);
    const started = Date.now();
    await d.close(50);
    expect(Date.now() - started).toBeLessThan(1_000);
    open = undefined;
  });
});
