import { withDeadline } from './deadline.ts';

/** Runs a dependency check with a deadline: `ok`, or `unavailable` on error or timeout. */
export async function probe(fn: () => Promise<unknown>, timeoutMs: number): Promise<'ok' | 'unavailable'> {
  try {
    await withDeadline(fn(), timeoutMs);
    return 'ok';
  } catch {
    return 'unavailable';
  }
}
