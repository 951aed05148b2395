import { Worker } from 'node:worker_threads';
import { afterEach, describe, expect, it } from 'vitest';
import { runOpenLoop, scheduledAtMs, summarize } from '../../bench/open-loop.ts';

/**
 * A real HTTP server on loopback, in a worker thread (its own event loop: a stall of the test's thread,
 * which is the generator's, does not stall the server). Answers 202 `{"orderId":"o-<n>"}` after
 * `delayMs`, 400 on `/bad`; counts the requests it saw.
 */
const SERVER = `
const { createServer } = require('node:http');
const { parentPort, workerData } = require('node:worker_threads');
let n = 0;
const server = createServer((req, res) => {
  req.resume();
  req.on('end', () => {
    const id = 'o-' + ++n;
    parentPort.postMessage({ seen: n });
    const answer = () => {
      if (req.url === '/bad') return res.writeHead(400).end('{}');
      res.writeHead(202, { 'content-type': 'application/json' }).end(JSON.stringify({ orderId: id }));
    };
    if (workerData.delayMs > 0) setTimeout(answer, workerData.delayMs); else answer();
  });
});
server.listen(0, '127.0.0.1', () => parentPort.postMessage({ port: server.address().port }));
`;

interface TestServer {
  url: string;
  seen: () => number;
  worker: Worker;
}

async function startServer(delayMs: number): Promise<TestServer> {
  const worker = new Worker(SERVER, { eval: true, workerData: { delayMs } });
  workers.push(worker);
  let seen = 0;
  const port = await new Promise<number>((resolve, reject) => {
    worker.on('message', (m: { port?: number; seen?: number }) => {
      if (m.port !== undefined) resolve(m.port);
      if (m.seen !== undefined) seen = m.seen;
    });
    worker.once('error', reject);
  });
  return { url: `http://127.0.0.1:${port}`, seen: () => seen, worker };
}

/** Polls until `probe()` is true or fails at the deadline (messages from the server thread are async). */
async function until(probe: () => boolean, what: string, timeoutMs = 5_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!probe()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

const workers: Worker[] = [];
afterEach(async () => {
  await Promise.all(workers.splice(0).map((w) => w.terminate()));
});

describe('open-loop schedule and percentile math', () => {
  it('schedules request i at i / rate', () => {
    expect(scheduledAtMs(0, 2000)).toBe(0);
    expect(scheduledAtMs(1, 2000)).toBe(0.5);
    expect(scheduledAtMs(1500, 1500)).toBe(1000);
    expect(scheduledAtMs(3, 250)).toBe(12);
  });

  it('nearest-rank percentiles, unsorted input, NaN (unanswered) ignored', () => {
    const values = Array.from({ length: 1000 }, (_, i) => 1000 - i); // 1000 … 1
    values.push(NaN, NaN);
    const s = summarize(values);
    expect(s.p50).toBe(500);
    expect(s.p90).toBe(900);
    expect(s.p99).toBe(990);
    expect(s.p999).toBe(999);
    expect(s.max).toBe(1000);
    expect(s.mean).toBe(500.5);
    expect(summarize([])).toEqual({ mean: 0, p50: 0, p90: 0, p99: 0, p999: 0, max: 0 });
    expect(summarize([7]).p99).toBe(7);
  });
});

describe('runOpenLoop against a real local server', () => {
  it('counts latency from the scheduled time: requests queued behind one busy socket carry their wait', async () => {
    // One socket, 20 ms per answer (≤ 50/s) while 200/s are offered for 0.25 s: 50 requests pile up
    // behind the socket. From its scheduled time, request i waits ≈ 20·(i+1) − 5·i ms (the last ≈ 775 ms);
    // from its departure on the socket, every request would take ≈ 20 ms.
    const s = await startServer(20);
    const ids: string[] = [];
    const r = await runOpenLoop({
      urls: [s.url],
      ratePerS: 200,
      durationS: 0.25,
      method: 'POST',
      path: '/v1/orders',
      body: '{}',
      socketsPerTarget: 1,
      acceptedIds: ids,
    });
    expect(r.scheduled).toBe(50);
    expect(r.sent).toBe(50);
    expect(r.accepted).toBe(50);
    expect(r.errors + r.timeouts).toBe(0);
    expect(ids).toHaveLength(50);
    expect(new Set(ids).size).toBe(50);
    await until(() => s.seen() === 50, 'the server to count 50 requests');
    expect(r.socketWaits).toBeGreaterThan(40);
    // Measured from send time, max and p50 would be ~20-40 ms.
    expect(r.latencyMs.max).toBeGreaterThan(650);
    expect(r.latencyMs.p50).toBeGreaterThan(300);
    // The server's 50 answers take ≥ 1 s: far less than the 200/s offered.
    expect(r.achievedPerS).toBeLessThan(60);
  });

  it("counts the generator's own stall: requests due while it was blocked are late, and latency says so", async () => {
    const s = await startServer(0);
    // Block this process's event loop (the generator's) for 150 ms, 100 ms into a 0.5 s run.
    const block = setTimeout(() => {
      const until = performance.now() + 150;
      while (performance.now() < until) {
        // busy: nothing leaves, nothing is read
      }
    }, 100);
    const r = await runOpenLoop({ urls: [s.url, s.url], ratePerS: 400, durationS: 0.5, path: '/x' });
    clearTimeout(block);
    expect(r.scheduled).toBe(200);
    expect(r.accepted).toBe(200);
    // ~60 of the 200 requests were due during the stall and left in a burst after it, the first
    // ~150 ms late: from their scheduled times their latencies spread over 0-150 ms, so the slowest
    // 10% of all requests took > ~100 ms. Measured from when they left, the burst would answer in a
    // few ms (the server's thread never stalled) and p90 would be a few ms.
    expect(r.lagMs.max).toBeGreaterThan(120);
    expect(r.latencyMs.max).toBeGreaterThanOrEqual(r.lagMs.max);
    expect(r.latencyMs.p90).toBeGreaterThan(60);
    expect(r.latencyMs.mean).toBeGreaterThan(10);
  });

  it('counts other statuses as rejected, not accepted', async () => {
    const s = await startServer(0);
    const ids: string[] = [];
    const r = await runOpenLoop({
      urls: [s.url],
      ratePerS: 100,
      durationS: 0.1,
      path: '/bad',
      acceptedIds: ids,
    });
    expect(r.accepted).toBe(0);
    expect(r.rejected).toEqual({ 400: 10 });
    expect(ids).toEqual([]);
  });

  it('refuses targets that are not loopback', async () => {
    await expect(runOpenLoop({ urls: ['http://example.com'], ratePerS: 1, durationS: 1 })).rejects.toThrow(
      /loopback/,
    );
  });
});
