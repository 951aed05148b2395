import { describe, expect, it } from 'vitest';
import { createTokenBucket } from '../../../shared/bulk/rate.ts';

describe('token bucket', () => {
  it('hands out its burst at once, then one token per 1/rate second', async () => {
    let t = 0;
    const bucket = createTokenBucket(10, { burst: 2, now: () => t });
    await bucket.take(); // the first token is there from the start
    const waiting = bucket.take();
    let taken = false;
    void waiting.then(() => (taken = true));
    await new Promise((r) => setTimeout(r, 20));
    expect(taken).toBe(false);
    t += 100; // 1/10 s: one token
    await waiting;
    t += 10_000; // a long pause saves up the burst, no more
    await bucket.take();
    await bucket.take();
    const third = bucket.take();
    let thirdTaken = false;
    void third.then(() => (thirdTaken = true));
    await new Promise((r) => setTimeout(r, 20));
    expect(thirdTaken).toBe(false);
    t += 100;
    await third;
  });

  it('measured over real time, holds its rate', async () => {
    const bucket = createTokenBucket(200);
    const started = performance.now();
    for (let i = 0; i < 100; i++) await bucket.take();
    const seconds = (performance.now() - started) / 1_000;
    // 100 tokens at 200/s with a burst of 20: at least (100 - 20) / 200 = 0.4 s.
    expect(seconds).toBeGreaterThanOrEqual(0.38);
  });

  it('stops waiting when its signal aborts', async () => {
    const bucket = createTokenBucket(1, { now: () => 0 });
    await bucket.take();
    const ac = new AbortController();
    const waiting = bucket.take(ac.signal);
    ac.abort(new Error('stopping'));
    await expect(waiting).rejects.toThrow('stopping');
  });
});
