import { describe, expect, it } from 'vitest';
import { createBatcher, runWithIsolation } from '../../shared/batch.ts';

describe('batcher', () => {
  it('coalesces concurrent submissions into bounded batches and settles each caller', async () => {
    const batches: number[][] = [];
    const batcher = createBatcher<number, number>({
      maxSize: 3,
      maxWaitMs: 5,
      run: async (items) => {
        batches.push([...items]);
        return items.map((i) =>
          i === 4 ? { ok: false, error: new Error('four') } : { ok: true, value: i * 10 },
        );
      },
    });
    const results = await Promise.allSettled([1, 2, 3, 4, 5].map((i) => batcher.submit(i)));
    expect(batches).toEqual([
      [1, 2, 3],
      [4, 5],
    ]);
    expect(results.map((r) => (r.status === 'fulfilled' ? r.value : (r.reason as Error).message))).toEqual([
      10,
      20,
      30,
      'four',
      50,
    ]);
  });

  it('rejects every caller when the batch itself fails', async () => {
    const batcher = createBatcher<number, number>({
      maxSize: 10,
      maxWaitMs: 1,
      run: () => Promise.reject(new Error('db down')),
    });
    await expect(Promise.all([batcher.submit(1), batcher.submit(2)])).rejects.toThrow('db down');
  });

  it('isolates one bad item: the others still succeed', async () => {
    const outcomes = await runWithIsolation([1, 2, 3], async (items) => {
      if (items.includes(2)) throw new Error('bad 2');
      return items.map((i) => i);
    });
    expect(outcomes.map((o) => o.ok)).toEqual([true, false, true]);
  });
});
