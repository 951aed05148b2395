import { withDeadline } from './deadline.ts';
import type { Failure } from './lifecycle.ts';

/** Runs a dependency check with a deadline: `ok`, or `unavailable` on error or timeout. */
export async function probe(fn: () => Promise<unknown>, timeoutMs: number): Promise<'ok' | 'unavailable'> {
  try {
    await withDeadline(fn(), timeoutMs);
    return 'ok';
  } catch {
    return 'unavailable';
  }
}

export type Liveness =
  | { status: 200; body: { status: 'ok' } }
  | { status: 503; body: { status: 'failed'; component: string; reason: string; since: string } };

/**
 * The `/healthz` answer of every process (API, worker metrics server): 200 while each of its
 * components can work, 503 naming the component that cannot and why once one has failed for good
 * (the process is then shutting down and exits non-zero).
 * @example app.get('/healthz', (c) => { const { status, body } = liveness(lifecycle.failure()); return c.json(body, status); });
 */
export function liveness(failure: Failure | undefined): Liveness {
  return failure
    ? { status: 503, body: { status: 'failed', ...failure } }
    : { status: 200, body: { status: 'ok' } };
}
