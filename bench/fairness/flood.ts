import { orderBody } from '../load.ts';
import type { Progress } from '../progress.ts';

/** What one flooding tenant's batches achieved. */
export interface FloodResult {
  tenant: string;
  /** Orders asked for. */
  orders: number;
  /** Orders answered `queued`. */
  accepted: number;
  /** When the first batch left and the last answer arrived (ms since the epoch). */
  startedAt: number;
  finishedAt: number;
  /** accepted / (finishedAt − startedAt): how fast the API took the flood. */
  acceptedPerS: number;
  requests: number;
  /** Batches answered 429 or 503 as a whole (retried after Retry-After, at most 1 s). */
  refusedBatches: number;
  /** Orders answered with an error inside a 202 batch (not accepted, not retried: their outcome counts as unknown). */
  itemErrors: number;
}

export interface FloodOptions {
  url: string;
  tenant: string;
  secret: string;
  /** Customer ids are `<tag>-<n % 100>`. */
  tag: string;
  orders: number;
  orderSize: number;
  /** Orders per POST /v1/orders/batch. @defaultValue 500 */
  perRequest?: number;
  /** Batches in flight at once. @defaultValue 3 */
  lanes?: number;
  progress: Progress;
}

/**
 * One tenant posting `orders` orders through `POST /v1/orders/batch` as fast as the API takes them
 * (`lanes` requests in flight, the next leaving as soon as one is answered), collecting the accepted
 * order ids for verification. A batch refused as a whole (429 backlog quota, 503 shed) waits its
 * Retry-After (at most 1 s) and goes again, so "as fast as the API takes them" includes the API saying no.
 */
export async function flood(o: FloodOptions, acceptedIds: string[]): Promise<FloodResult> {
  const perRequest = o.perRequest ?? 500;
  const r: FloodResult = {
    tenant: o.tenant,
    orders: o.orders,
    accepted: 0,
    startedAt: Date.now(),
    finishedAt: 0,
    acceptedPerS: 0,
    requests: 0,
    refusedBatches: 0,
    itemErrors: 0,
  };
  let next = 0;
  const lane = async () => {
    while (next < o.orders) {
      const from = next;
      const n = Math.min(perRequest, o.orders - from);
      next += n;
      const body = JSON.stringify({
        orders: Array.from({ length: n }, (_, i) => orderBody(`${o.tag}-${(from + i) % 100}`, o.orderSize)),
      });
      for (;;) {
        r.requests += 1;
        const res = await fetch(`${o.url}/v1/orders/batch`, {
          method: 'POST',
          headers: { 'content-type': 'application/json', authorization: `Bearer ${o.secret}` },
          body,
        });
        if (res.status === 429 || res.status === 503) {
          r.refusedBatches += 1;
          await res.arrayBuffer();
          const after = Number(res.headers.get('retry-after') ?? 1);
          await new Promise((w) => setTimeout(w, Math.min(1, Number.isFinite(after) ? after : 1) * 1000));
          continue;
        }
        if (res.status !== 202)
          throw new Error(`${o.tenant}: batch answered ${res.status}: ${await res.text()}`);
        const answer = (await res.json()) as { orders: { orderId?: string }[] };
        for (const item of answer.orders) {
          if (item.orderId) {
            acceptedIds.push(item.orderId);
            r.accepted += 1;
          } else r.itemErrors += 1;
        }
        break;
      }
      o.progress.update(`flood ${o.tenant}`, r.accepted, o.orders);
    }
  };
  await Promise.all(Array.from({ length: o.lanes ?? 3 }, lane));
  r.finishedAt = Date.now();
  r.acceptedPerS = Math.round(r.accepted / Math.max(0.001, (r.finishedAt - r.startedAt) / 1000));
  return r;
}
