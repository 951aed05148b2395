import { setTimeout as sleep } from 'node:timers/promises';
import { Redis } from 'ioredis';
import { createPool, type Pool } from '../../shared/db/pool.ts';
import { enqueueBatches, orderBody } from '../load.ts';
import { readProcMemory, type ProcessMonitor } from '../monitor.ts';
import { summarize, type LatencySummary } from '../open-loop.ts';
import type { Progress } from '../progress.ts';
import { createStack, type BenchProcess, type Stack } from '../stack.ts';
import { startChild, type Child } from './child.ts';
import type { LoadRecord } from './clients.ts';

/** What every phase receives from the results bench's main. */
export interface PhaseEnv {
  logLevel: string;
  platformEnv: Record<string, string>;
  monitor: ProcessMonitor;
  progress: Progress;
  live: Set<{ close(): Promise<void> }>;
  orderSize: number;
}

const AUTH = { authorization: 'Bearer dev', 'content-type': 'application/json' };
const CLIENTS = new URL('./clients.ts', import.meta.url);
const RECEIVER = new URL('./receiver.ts', import.meta.url);

/** The clients process: Node 20 needs the flag for its WebSocket global (the inspector sessions). */
const startClients = async () =>
  (await startChild(CLIENTS, ['--experimental-websocket', '--no-warnings'])).child;

/** A stack, registered for clean-up on interrupt, closed (processes stopped, schema dropped) after `fn`. */
async function withStack<T>(
  env: PhaseEnv,
  name: string,
  extra: Record<string, string>,
  fn: (stack: Stack, pool: Pool) => Promise<T>,
): Promise<T> {
  const stack = createStack({
    name,
    bus: 'bullmq',
    logLevel: env.logLevel,
    monitor: env.monitor,
    cpuProfDir: undefined,
    env: { ...env.platformEnv, ...extra },
  });
  env.live.add(stack);
  const pool = createPool({ ...stack.config.database, poolMax: 2, statementTimeoutMs: 120_000 });
  try {
    return await fn(stack, pool);
  } finally {
    await pool.end().catch(() => undefined);
    await stack
      .close()
      .then(() => removeLeftovers(stack.config.redis.url, stack.config.redis.queuePrefix))
      .then(
        () =>
          env.progress.done(
            `${name}: stopped; schema ${stack.config.database.schema} and prefix ${stack.config.redis.queuePrefix} removed`,
          ),
        (err: unknown) => env.progress.done(`cleanup of ${name} failed: ${String(err)}`),
      );
    env.live.delete(stack);
  }
}

/**
 * Deletes what the shared clean-up (test/support/platform.ts) leaves under the stack's own prefix:
 * the BullMQ bus's `<prefix>:event-groups` set, and rate-limit windows (those would expire anyway).
 */
async function removeLeftovers(url: string, prefix: string): Promise<void> {
  const redis = new Redis(url, { maxRetriesPerRequest: 1 });
  try {
    let cursor = '0';
    do {
      const [next, keys] = await redis.scan(cursor, 'MATCH', `${prefix}:*`, 'COUNT', 1000);
      cursor = next;
      if (keys.length > 0) await redis.del(...keys);
    } while (cursor !== '0');
  } finally {
    redis.disconnect();
  }
}

/** POSTs one order with `Prefer: wait` until it is answered decided (201): every hop is up. */
async function warmPipeline(url: string, stack: Stack): Promise<string> {
  const deadline = Date.now() + 90_000;
  for (;;) {
    stack.assertAlive();
    const res = await fetch(`${url}/v1/orders`, {
      method: 'POST',
      headers: { ...AUTH, prefer: 'wait=10' },
      body: JSON.stringify(orderBody('warm', 3)),
    });
    const body = (await res.json()) as { orderId?: string; status?: string };
    if (res.status === 201 && body.orderId && body.status === 'completed') return body.orderId;
    if (Date.now() > deadline)
      throw new Error(`the pipeline never decided a warm-up order (last ${res.status})`);
  }
}

// ---------------------------------------------------------------------------------------------------
// 1. Memory per open wait and per open stream

export interface MemorySample {
  /** V8 heap used after two forced full GCs, KB. */
  heapKb: number;
  /** VmRSS of the API process after those GCs, KB. */
  rssKb: number;
}

export interface MemoryResult {
  kind: 'wait' | 'stream';
  connections: number;
  /** How long opening them all took. */
  openMs: number;
  idle: MemorySample;
  open: MemorySample;
  /** After the clients went away (what the API kept). */
  closed: MemorySample;
  /** When `closed` was sampled, ms after the clients closed (see measureKind). */
  releasedMs: number;
  heapPerConnectionKb: number;
  rssPerConnectionKb: number;
  /** Checked while open: waits answered (must be 0), streams the server ended (must be 0), client errors. */
  answeredWhileOpen: number;
  endedWhileOpen: number;
  clientErrors: number;
}

/** Turns on the inspector of a running API (SIGUSR1; --inspect-port=0 picks a free port) and finds its URL. */
async function inspectorUrl(proc: BenchProcess): Promise<string> {
  proc.child.kill('SIGUSR1');
  const deadline = Date.now() + 10_000;
  for (;;) {
    for (const line of proc.tail) {
      const m = /Debugger listening on (ws:\/\/127\.0\.0\.1:\d+\/\S+)/.exec(line);
      if (m) return m[1]!;
    }
    if (Date.now() > deadline) throw new Error(`${proc.label}: its inspector never started`);
    await sleep(50);
  }
}

async function sample(clients: Child, wsUrl: string, pid: number): Promise<MemorySample> {
  const heap = await clients.ask<{ usedSize: number }>({ type: 'heap', wsUrl }, 'heap');
  const rss = readProcMemory(pid)?.rssKb ?? NaN;
  return { heapKb: Math.round(heap.usedSize / 1024), rssKb: rss };
}

interface Status {
  open: number;
  answered: number;
  errors: number;
  ended: number;
}

async function measureKind(
  env: PhaseEnv,
  kind: 'wait' | 'stream',
  stack: Stack,
  index: number,
  ids: readonly string[],
  n: number,
  waitS: number,
): Promise<MemoryResult> {
  const proc = stack.processes.filter((p) => p.label.startsWith('api'))[index]!;
  const url = stack.apiUrls[index]!;
  const pid = proc.child.pid!;
  const wsUrl = await inspectorUrl(proc);
  const paths = ids.map((id) => (kind === 'wait' ? `/v1/orders/${id}` : `/v1/orders/${id}/events`));
  const clients = await startClients();
  try {
    // Warm-up, not measured: the first waits/streams compile their code and open lazily made state.
    const warm = paths.slice(0, 50);
    await clients.ask({ type: 'open', kind, base: url, paths: warm, waitS }, 'opened');
    await sleep(500);
    await clients.ask({ type: 'close' }, 'closed');
    await sleep(1_000);
    const idle = await sample(clients, wsUrl, pid);
    env.progress.update(`${n} ${kind}s`, 0, n);
    const opened = await clients.ask<{ ms: number }>(
      { type: 'open', kind, base: url, paths: paths.slice(50, 50 + n), waitS },
      'opened',
    );
    // Let the API take every request in (the client only knows a wait was sent): sampled again each
    // second until the heap stops growing (within 3% of what the connections took; at most 6 samples).
    await sleep(2_000);
    let open = await sample(clients, wsUrl, pid);
    for (let tries = 1; tries < 6; tries++) {
      await sleep(1_000);
      const again = await sample(clients, wsUrl, pid);
      const settled = again.heapKb - open.heapKb <= 0.03 * Math.max(1, open.heapKb - idle.heapKb);
      open = again;
      if (settled) break;
    }
    const status = await clients.ask<Status>({ type: 'status' }, 'status');
    await clients.ask({ type: 'close' }, 'closed');
    // The API lets go of them as it sees the sockets close: on a busy machine that takes a while, so
    // the heap is sampled until it is back within 10% of what they held (at most 5 tries, 1.5 s apart).
    const closeStarted = Date.now();
    let closed: MemorySample;
    for (let tries = 1; ; tries++) {
      await sleep(1_500);
      closed = await sample(clients, wsUrl, pid);
      if (closed.heapKb - idle.heapKb <= 0.1 * (open.heapKb - idle.heapKb) || tries === 5) break;
    }
    const releasedMs = Date.now() - closeStarted;
    const per = (a: number, b: number) => Math.round(((b - a) / n) * 100) / 100;
    return {
      kind,
      connections: n,
      openMs: opened.ms,
      idle,
      open,
      closed,
      releasedMs,
      heapPerConnectionKb: per(idle.heapKb, open.heapKb),
      rssPerConnectionKb: per(idle.rssKb, open.rssKb),
      answeredWhileOpen: status.answered,
      endedWhileOpen: status.ended,
      clientErrors: status.errors,
    };
  } finally {
    await clients.close();
  }
}

/**
 * Two API processes and no worker: every order stays queued. One API holds `n` `Prefer: wait` GETs,
 * the other `n` SSE streams, each on a distinct order; each API's heap (after forced GCs through its
 * inspector) and RSS are read idle, with the connections open, and after they closed.
 */
export async function runMemory(env: PhaseEnv, n: number, waitS: number): Promise<MemoryResult[]> {
  const nodeOptions = `${process.env.NODE_OPTIONS ?? ''} --inspect-port=0`.trim();
  return withStack(env, 'results-memory', { NODE_OPTIONS: nodeOptions }, async (stack) => {
    env.progress.step('memory: 2 API processes, no workers (orders stay queued)');
    // One at a time: each API's process is then known by its index.
    await stack.startApi(1);
    await stack.startApi(1);
    const ids: string[] = [];
    await enqueueBatches(stack.apiUrls[0]!, n + 50, 'queued', env.orderSize, ids, env.progress);
    const out: MemoryResult[] = [];
    for (const [i, kind] of (['wait', 'stream'] as const).entries()) {
      env.progress.step(
        `memory: ${n} open ${kind === 'wait' ? `Prefer: wait=${waitS} GETs` : 'SSE streams'}`,
      );
      const r = await measureKind(env, kind, stack, i, ids, n, waitS);
      out.push(r);
      env.progress.done(
        `${r.heapPerConnectionKb} KB heap, ${r.rssPerConnectionKb} KB RSS per ${kind} (heap ${r.idle.heapKb} → ${r.open.heapKb} → ${r.closed.heapKb} KB)`,
      );
      stack.assertAlive();
    }
    return out;
  });
}

// ---------------------------------------------------------------------------------------------------
// 2. Pipeline latency with and without open streams

export interface LatencyPhase {
  label: string;
  openStreams: number;
  offeredPerS: number;
  scheduled: number;
  /** Answered 201 (decided within the wait). */
  decided: number;
  /** Other answers by status, and requests without an answer (error, timeout). */
  otherStatuses: Record<string, number>;
  noAnswer: number;
  /** Scheduled send time → the `Prefer: wait` answer: decided, as the producer learns it. */
  producerMs: LatencySummary;
  /** Scheduled send time → `accepted_at` (the API admitted it). */
  admissionMs: LatencySummary;
  /** `accepted_at` → `decided_at` in the write model. */
  pipelineMs: LatencySummary;
  /**
   * `decided_at` → the answer received: `decided_at` is PostgreSQL's now(), the start of the worker's
   * transaction, so this is the rest of that transaction and its commit, the decided step's publication
   * and the API's read of the command and its response.
   */
  answerMs: LatencySummary;
  /** How late the generator sent (its own lag). */
  lagMs: LatencySummary;
  /** Streams still open at the end of the phase (must equal openStreams). */
  streamsOpenAtEnd: number;
}

export interface LatencyResult {
  ratePerS: number;
  durationS: number;
  streams: number;
  phases: LatencyPhase[];
}

async function createRefunds(url: string, orderId: string, n: number): Promise<string[]> {
  const ids: string[] = [];
  let next = 0;
  const lane = async () => {
    while (next < n) {
      next += 1;
      const res = await fetch(`${url}/v1/orders/${orderId}/refunds`, {
        method: 'POST',
        headers: AUTH,
        body: JSON.stringify({ amountCents: 1 }),
      });
      const body = (await res.json()) as { refundId?: string };
      if (res.status !== 202 || !body.refundId) throw new Error(`refund POST answered ${res.status}`);
      ids.push(body.refundId);
    }
  };
  await Promise.all(Array.from({ length: 16 }, lane));
  return ids;
}

/**
 * One API and one worker process running outbox, projections and orders (no refunds worker: refunds
 * stay queued, so their streams stay open). Open-loop order POSTs with `Prefer: wait=10` at a fixed
 * rate: with no stream open, with `streams` open on as many queued refunds, and with none again.
 */
export async function runLatency(
  env: PhaseEnv,
  o: { ratePerS: number; durationS: number; streams: number },
): Promise<LatencyResult> {
  return withStack(
    env,
    'results-latency',
    { WORKER_KINDS: 'outbox,projections,orders' },
    async (stack, pool) => {
      env.progress.step('latency: 1 API, 1 worker process (outbox, projections, orders)');
      await stack.startApi(1);
      await stack.startWorkers(1);
      const url = stack.apiUrls[0]!;
      const orderId = await warmPipeline(url, stack);
      const body = JSON.stringify(orderBody('lat-0', env.orderSize));
      // The generator runs in a clients process of its own; the streams are held by another.
      const generator = await startClients();
      const clients = await startClients();
      const loop = async (durationS: number) =>
        (
          await generator.ask<{ records: LoadRecord[] }>(
            {
              type: 'load',
              base: url,
              path: '/v1/orders',
              headers: { ...AUTH, prefer: 'wait=10' },
              body,
              ratePerS: o.ratePerS,
              durationS,
              timeoutMs: 15_000,
            },
            'loaded',
            durationS * 1_000 + 60_000,
          )
        ).records;
      const phases: LatencyPhase[] = [];
      try {
        env.progress.step(`latency: warm-up, ${o.ratePerS}/s for 3 s`);
        await loop(3);
        env.progress.step(`latency: ${o.streams} queued refunds for the streams`);
        const refunds = await createRefunds(url, orderId, o.streams);
        for (const [label, streams] of [
          ['no stream open', 0],
          [`${o.streams} streams open`, o.streams],
          ['no stream open (again)', 0],
        ] as const) {
          if (streams > 0) {
            await clients.ask(
              {
                type: 'open',
                kind: 'stream',
                base: url,
                paths: refunds.map((id) => `/v1/refunds/${id}/events`),
              },
              'opened',
            );
            await sleep(1_000);
          }
          env.progress.step(`latency: ${o.ratePerS}/s for ${o.durationS} s, ${label}`);
          const records = await loop(o.durationS);
          const status = await clients.ask<Status>({ type: 'status' }, 'status');
          if (streams > 0) await clients.ask({ type: 'close' }, 'closed');
          const decided = records.filter((r) => r.status === 201 && r.orderId !== null);
          const { rows } = await pool.query<{ id: string; accepted: number; decided: number }>(
            `SELECT order_id::text AS id, extract(epoch FROM accepted_at)::float8 * 1000 AS accepted,
                  extract(epoch FROM decided_at)::float8 * 1000 AS decided
             FROM orders WHERE order_id = ANY($1::uuid[])`,
            [decided.map((r) => r.orderId)],
          );
          const times = new Map(rows.map((r) => [r.id, r]));
          const split = decided.flatMap((r) => {
            const t = times.get(r.orderId!);
            return t ? [{ r, t }] : [];
          });
          const otherStatuses: Record<string, number> = {};
          for (const r of records) {
            if (r.status !== 0 && r.status !== 201)
              otherStatuses[r.status] = (otherStatuses[r.status] ?? 0) + 1;
          }
          const phase: LatencyPhase = {
            label,
            openStreams: streams,
            offeredPerS: o.ratePerS,
            scheduled: records.length,
            decided: decided.length,
            otherStatuses,
            noAnswer: records.filter((r) => r.status === 0).length,
            producerMs: summarize(decided.map((r) => r.endMs - r.scheduledMs)),
            admissionMs: summarize(split.map(({ r, t }) => t.accepted - r.scheduledMs)),
            pipelineMs: summarize(split.map(({ t }) => t.decided - t.accepted)),
            answerMs: summarize(split.map(({ r, t }) => r.endMs - t.decided)),
            lagMs: summarize(records.map((r) => r.lagMs)),
            streamsOpenAtEnd: status.open,
          };
          phases.push(phase);
          env.progress.done(
            `producer p50 ${phase.producerMs.p50} p99 ${phase.producerMs.p99} ms (admission p50 ${phase.admissionMs.p50}, pipeline p50 ${phase.pipelineMs.p50}, answer p50 ${phase.answerMs.p50} ms); ${phase.decided}/${phase.scheduled} answered 201`,
          );
          stack.assertAlive();
        }
      } finally {
        await clients.close();
        await generator.close();
      }
      return { ratePerS: o.ratePerS, durationS: o.durationS, streams: o.streams, phases };
    },
  );
}

// ---------------------------------------------------------------------------------------------------
// 3. Webhook delivery throughput

export interface WebhookRun {
  endpoints: number;
  orders: number;
  expected: number;
  received: number;
  /** First to last delivery received (all endpoints). */
  spanMs: number;
  deliveriesPerS: number;
  /** From the first order posted to the last delivery received. */
  totalMs: number;
  /** First to last order decided (write model), and orders/s over it: the producer side of the flow. */
  ordersDecidedSpanMs: number;
  ordersPerS: number;
  /** Deliveries whose webhook-id the endpoint had already received. */
  duplicates: number;
  /** Deliveries of an order the endpoint had already received (under any webhook-id). */
  orderDuplicates: number;
  /** Deliveries of orders this run did not post. */
  unexpected: number;
  /** (endpoint, order) pairs never received. */
  missing: number;
  badSignatures: number;
  /** Deliveries the platform recorded delivered, and their most attempts. */
  recordedDelivered: number;
  maxAttempts: number;
  exactlyOnce: boolean;
}

interface ReceiverReport {
  total: number;
  endpoints: Record<
    string,
    {
      received: number;
      uniqueIds: number;
      duplicates: number;
      badSignatures: number;
      orderIds: string[];
      firstMs: number;
      lastMs: number;
    }
  >;
}

/**
 * One API and one worker process (every worker kind), a node:http receiver answering 204 in a process
 * of its own. For each endpoint count: that many endpoints registered for `order.*`, `orders` posted
 * through the batch route, every delivery awaited and checked (exactly once per endpoint and order, by
 * webhook-id, signature verified), the endpoints deleted.
 */
export async function runWebhooks(
  env: PhaseEnv,
  o: { orders: number; endpointCounts: readonly number[] },
): Promise<WebhookRun[]> {
  return withStack(env, 'results-webhooks', {}, async (stack, pool) => {
    env.progress.step('webhooks: 1 API, 1 worker process (every kind), a local receiver');
    await stack.startApi(1);
    await stack.startWorkers(1);
    const url = stack.apiUrls[0]!;
    await warmPipeline(url, stack);
    const { child: receiver, ready } = await startChild<{ port: number }>(RECEIVER, [], 'listening');
    env.monitor.watch('receiver', receiver.pid);
    const runs: WebhookRun[] = [];
    try {
      for (const k of o.endpointCounts) {
        env.progress.step(`webhooks: ${k} endpoints, ${o.orders} orders`);
        const endpoints: { id: string; name: string }[] = [];
        const secrets: Record<string, string> = {};
        for (let i = 0; i < k; i++) {
          const name = `k${k}-${i}`;
          const res = await fetch(`${url}/v1/webhooks`, {
            method: 'POST',
            headers: AUTH,
            body: JSON.stringify({ url: `http://127.0.0.1:${ready.port}/${name}`, eventTypes: ['order.*'] }),
          });
          const body = (await res.json()) as { id?: string; secret?: string };
          if (res.status !== 201 || !body.id || !body.secret)
            throw new Error(`POST /v1/webhooks answered ${res.status}: ${JSON.stringify(body)}`);
          endpoints.push({ id: body.id, name });
          secrets[name] = body.secret;
        }
        await receiver.ask({ type: 'secrets', secrets }, 'ok');
        const before = (await receiver.ask<{ total: number }>({ type: 'status' }, 'status')).total;
        const expected = o.orders * k;
        const ids: string[] = [];
        const postedAt = performance.timeOrigin + performance.now();
        await enqueueBatches(url, o.orders, `wh${k}`, env.orderSize, ids, env.progress);
        // Every delivery, or no progress for 30 s, or 240 s in all (the run then fails its check).
        let last = -1;
        let stalledSince = Date.now();
        const deadline = Date.now() + 240_000;
        for (;;) {
          const got = (await receiver.ask<{ total: number }>({ type: 'status' }, 'status')).total - before;
          env.progress.update(`deliveries to ${k} endpoints`, got, expected);
          if (got >= expected) break;
          if (got !== last) [last, stalledSince] = [got, Date.now()];
          if (Date.now() - stalledSince > 30_000 || Date.now() > deadline) break;
          stack.assertAlive();
          await sleep(200);
        }
        // Late duplicates would show up here.
        await sleep(1_000);
        const report = await receiver.ask<ReceiverReport>({ type: 'report' }, 'report');
        const mine = endpoints.map((e) => report.endpoints[e.name]);
        const wanted = new Set(ids);
        let duplicates = 0;
        let orderDuplicates = 0;
        let unexpected = 0;
        let missing = 0;
        let badSignatures = 0;
        let received = 0;
        let first = Infinity;
        let lastMs = 0;
        for (const t of mine) {
          if (!t) {
            missing += wanted.size;
            continue;
          }
          received += t.received;
          duplicates += t.duplicates;
          badSignatures += t.badSignatures;
          first = Math.min(first, t.firstMs);
          lastMs = Math.max(lastMs, t.lastMs);
          const seen = new Map<string, number>();
          for (const id of t.orderIds) seen.set(id, (seen.get(id) ?? 0) + 1);
          for (const id of wanted) if (!seen.has(id)) missing += 1;
          for (const [id, count] of seen) {
            if (!wanted.has(id)) unexpected += count;
            else orderDuplicates += count - 1;
          }
        }
        const { rows: recorded } = await pool.query<{ delivered: number; max_attempts: number | null }>(
          `SELECT count(*) FILTER (WHERE status = 'delivered')::int AS delivered, max(attempts)::int AS max_attempts
             FROM webhook_deliveries WHERE endpoint_id = ANY($1::uuid[])`,
          [endpoints.map((e) => e.id)],
        );
        const { rows: decided } = await pool.query<{ first: number; last: number }>(
          `SELECT extract(epoch FROM min(decided_at))::float8 * 1000 AS first,
                  extract(epoch FROM max(decided_at))::float8 * 1000 AS last
             FROM orders WHERE order_id = ANY($1::uuid[])`,
          [ids],
        );
        const spanMs = Math.max(1, Math.round(lastMs - first));
        const decidedSpan = Math.max(1, Math.round((decided[0]?.last ?? 0) - (decided[0]?.first ?? 0)));
        const run: WebhookRun = {
          endpoints: k,
          orders: ids.length,
          expected,
          received,
          spanMs,
          deliveriesPerS: Math.round(received / (spanMs / 1000)),
          totalMs: Math.round(lastMs - postedAt),
          ordersDecidedSpanMs: decidedSpan,
          ordersPerS: Math.round(ids.length / (decidedSpan / 1000)),
          duplicates,
          orderDuplicates,
          unexpected,
          missing,
          badSignatures,
          recordedDelivered: recorded[0]?.delivered ?? 0,
          maxAttempts: recorded[0]?.max_attempts ?? 0,
          exactlyOnce:
            received === expected &&
            duplicates === 0 &&
            orderDuplicates === 0 &&
            unexpected === 0 &&
            missing === 0 &&
            badSignatures === 0 &&
            ids.length === o.orders,
        };
        runs.push(run);
        env.progress.done(
          `${run.received}/${expected} deliveries in ${spanMs} ms: ${run.deliveriesPerS}/s; orders decided at ${run.ordersPerS}/s; ${duplicates} duplicate, ${missing} missing, ${badSignatures} bad signatures`,
        );
        for (const e of endpoints) {
          await fetch(`${url}/v1/webhooks/${e.id}`, { method: 'DELETE', headers: AUTH });
        }
      }
    } finally {
      await receiver.close();
    }
    return runs;
  });
}
