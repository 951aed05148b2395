import autocannon from 'autocannon';
import { percentile } from './percentile.ts';
import type { Progress } from './progress.ts';

/** What one autocannon phase measured (latencies in ms, rates in req/s). */
export interface LoadResult {
  title: string;
  /** Offered rate; null = saturation (as fast as the connections go). */
  offeredPerS: number | null;
  connections: number;
  durationS: number;
  sent: number;
  accepted: number;
  non2xx: number;
  errors: number;
  timeouts: number;
  /** Accepted (202) responses per second of the phase. */
  acceptedPerS: number;
  latencyMs: { mean: number; p50: number; p90: number; p95: number; p99: number; p999: number; max: number };
  startedAt: number;
  finishedAt: number;
}

export interface LoadOptions {
  title: string;
  urls: readonly string[];
  connections: number;
  durationS: number;
  /** autocannon `overallRate`; undefined = saturation. */
  ratePerS?: number;
  body: string;
  progress: Progress;
}

/** The order every load phase posts; `customerId` tags the phase so its orders can be found in Postgres. */
export function orderBody(customerId: string, orderSize: number): Record<string, unknown> {
  return {
    customerId,
    currency: 'EUR',
    items: Array.from({ length: orderSize }, (_, i) => ({
      sku: `sku-${i}`,
      quantity: 1 + (i % 3),
      unitPriceCents: 100 + i,
    })),
  };
}

/**
 * POSTs the same order to `/v1/orders` of every URL (autocannon spreads connections round-robin)
 * and collects the id of every accepted order, so the run can be verified by counting afterwards.
 */
export async function runLoad(options: LoadOptions, accepted: string[]): Promise<LoadResult> {
  // Each response's latency, measured by autocannon; we keep our own copy for a true p95.
  const latencies: number[] = [];
  let done = 0;
  const startedAt = Date.now();
  const opts: autocannon.Options = {
    url: options.urls[0]!,
    connections: options.connections,
    duration: options.durationS,
    timeout: 10,
    ...(options.ratePerS ? { overallRate: options.ratePerS } : {}),
    requests: [
      {
        method: 'POST',
        path: '/v1/orders',
        headers: { 'content-type': 'application/json', authorization: 'Bearer dev' },
        body: options.body,
        onResponse: (status, body) => {
          if (status !== 202) return;
          accepted.push((JSON.parse(body) as { orderId: string }).orderId);
        },
      },
    ],
  };
  // autocannon 9 takes several URLs and spreads connections over them; its types only know one.
  if (options.urls.length > 1) (opts as { url: unknown }).url = [...options.urls];
  let resolveDone!: (r: autocannon.Result) => void;
  let rejectDone!: (e: Error) => void;
  const finished = new Promise<autocannon.Result>((resolve, reject) => {
    resolveDone = resolve;
    rejectDone = reject;
  });
  const instance = autocannon(opts, (err: Error | null, result: autocannon.Result) =>
    err ? rejectDone(err) : resolveDone(result),
  );
  instance.on('response', (_client: unknown, _status: number, _bytes: number, responseTimeMs: number) => {
    latencies.push(responseTimeMs);
    done += 1;
  });
  if (options.progress.tty) {
    autocannon.track(instance, {
      renderProgressBar: true,
      renderResultsTable: false,
      renderLatencyTable: false,
    });
  } else {
    instance.on('tick', () => options.progress.update(options.title, done, 0));
  }
  const result = await finished;
  const finishedAt = Date.now();
  latencies.sort((a, b) => a - b);
  const round = (n: number) => Math.round(n * 100) / 100;
  const durationS = result.duration || (finishedAt - startedAt) / 1000;
  const mean = latencies.reduce((s, l) => s + l, 0) / Math.max(1, latencies.length);
  return {
    title: options.title,
    offeredPerS: options.ratePerS ?? null,
    connections: options.connections,
    durationS: round(durationS),
    sent: result.requests.sent,
    accepted: result['2xx'],
    non2xx: result.non2xx,
    errors: result.errors,
    timeouts: result.timeouts,
    acceptedPerS: Math.round(result['2xx'] / durationS),
    latencyMs: {
      mean: round(mean),
      p50: round(percentile(latencies, 50)),
      p90: round(percentile(latencies, 90)),
      p95: round(percentile(latencies, 95)),
      p99: round(percentile(latencies, 99)),
      p999: round(percentile(latencies, 99.9)),
      max: round(latencies.at(-1) ?? 0),
    },
    startedAt,
    finishedAt,
  };
}

/**
 * Enqueues `count` orders through `POST /v1/orders/batch` (the real API, one `addBulk` per request),
 * a few requests in flight. Used to build backlogs for drain measurements.
 */
export async function enqueueBatches(
  url: string,
  count: number,
  tag: string,
  orderSize: number,
  accepted: string[],
  progress: Progress,
): Promise<void> {
  const perRequest = 500;
  let next = 0;
  const lane = async () => {
    while (next < count) {
      const from = next;
      const n = Math.min(perRequest, count - from);
      next += n;
      const orders = Array.from({ length: n }, (_, i) => orderBody(`${tag}-${(from + i) % 100}`, orderSize));
      const res = await fetch(`${url}/v1/orders/batch`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: 'Bearer dev' },
        body: JSON.stringify({ orders }),
      });
      if (res.status !== 202) throw new Error(`batch enqueue answered ${res.status}: ${await res.text()}`);
      const body = (await res.json()) as { orders: { orderId?: string }[] };
      for (const o of body.orders) if (o.orderId) accepted.push(o.orderId);
      progress.update(`enqueue ${tag}`, accepted.length, count);
    }
  };
  await Promise.all([lane(), lane(), lane()]);
}
