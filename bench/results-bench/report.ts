import type { Machine } from '../machine.ts';
import type { LatencyResult, MemoryResult, WebhookRun } from './phases.ts';

/** What `npm run bench -- --results` writes to `results-latest.json`. */
export interface ResultsBenchResults {
  format: 'conveyor-results-bench/1';
  startedAt: string;
  finishedAt: string;
  wallS: number;
  command: string;
  machine: Machine;
  /** `uptime` at the start and the end: other work on the box skews every number. */
  uptime: { start: string; end: string };
  options: {
    connections: number;
    waitSeconds: number;
    ratePerS: number;
    latencySeconds: number;
    webhookOrders: number;
    endpointCounts: number[];
    orderSize: number;
    platformEnv: Record<string, string>;
  };
  memory?: MemoryResult[];
  latency?: LatencyResult;
  webhooks?: WebhookRun[];
  /** Phases that threw. */
  failures: string[];
  /** Failures and failed checks: empty when `ok`. */
  problems: string[];
  ok: boolean;
}

/** The checks a run must pass for its numbers to mean what they say. */
export function resultProblems(r: Pick<ResultsBenchResults, 'memory' | 'latency' | 'webhooks'>): string[] {
  const out: string[] = [];
  for (const m of r.memory ?? []) {
    if (m.answeredWhileOpen > 0) out.push(`memory: ${m.answeredWhileOpen} waits answered while measured`);
    if (m.endedWhileOpen > 0) out.push(`memory: ${m.endedWhileOpen} streams ended while measured`);
    if (m.clientErrors > 0) out.push(`memory: ${m.clientErrors} ${m.kind} connections failed`);
    const held = m.open.heapKb - m.idle.heapKb;
    if (held > 0 && m.closed.heapKb - m.idle.heapKb > 0.1 * held)
      out.push(
        `memory: ${m.kind}s closed, the API still holds ${m.closed.heapKb - m.idle.heapKb} of the ${held} KB they took, ${m.releasedMs} ms later`,
      );
  }
  for (const p of r.latency?.phases ?? []) {
    if (p.decided !== p.scheduled)
      out.push(
        `latency (${p.label}): ${p.decided} of ${p.scheduled} orders answered decided (201) within the wait`,
      );
    if (p.streamsOpenAtEnd !== p.openStreams)
      out.push(
        `latency (${p.label}): ${p.streamsOpenAtEnd} of ${p.openStreams} streams still open at its end`,
      );
  }
  for (const w of r.webhooks ?? []) {
    if (!w.exactlyOnce)
      out.push(
        `webhooks (${w.endpoints} endpoints): ${w.received}/${w.expected} received, ${w.duplicates} duplicate webhook-ids, ${w.orderDuplicates} duplicate orders, ${w.missing} missing, ${w.unexpected} unexpected, ${w.badSignatures} bad signatures`,
      );
  }
  return out;
}

const n = (x: number) => x.toLocaleString('en-US');
const mb = (kb: number) => (kb / 1024).toFixed(1);

/** The markdown report: tables, checks, how it was measured, the machine. */
export function renderResultsMarkdown(r: ResultsBenchResults): string {
  const o = r.options;
  const lines: string[] = [
    '# Results without polling: measured',
    '',
    `\`${r.command}\` — ${r.startedAt}, ${r.wallS} s. ${r.ok ? 'Every check passed.' : '**Some checks FAILED** (below).'}`,
    '',
    `Machine: ${r.machine.nproc} × ${r.machine.cpuModel}, ${r.machine.memoryGb} GB, Node ${r.machine.node}, Redis ${r.machine.redis}, PostgreSQL ${r.machine.postgres} (${r.machine.postgresDurability}).`,
    '',
    `Load: at start \`${r.uptime.start}\`; at end \`${r.uptime.end}\`.`,
    '',
  ];
  if (r.memory) {
    lines.push(
      `## Memory per open wait and per open stream (${n(o.connections)} connections)`,
      '',
      'API process, V8 heap used after two forced full GCs and RSS; idle → connections open → closed again.',
      '',
      '| connection | heap idle → open → closed (MB) | RSS idle → open → closed (MB) | **heap per connection** | **RSS per connection** | opened in | released in |',
      '|---|---|---|---|---|---|---|',
    );
    for (const m of r.memory) {
      const what = m.kind === 'wait' ? `\`Prefer: wait=${o.waitSeconds}\` GET` : 'SSE lifecycle stream';
      lines.push(
        `| ${what} | ${mb(m.idle.heapKb)} → ${mb(m.open.heapKb)} → ${mb(m.closed.heapKb)} | ${mb(m.idle.rssKb)} → ${mb(m.open.rssKb)} → ${mb(m.closed.rssKb)} | **${m.heapPerConnectionKb} KB** | **${m.rssPerConnectionKb} KB** | ${n(m.openMs)} ms | ≤ ${n(m.releasedMs)} ms |`,
      );
    }
    lines.push('');
  }
  if (r.latency) {
    const l = r.latency;
    lines.push(
      `## Pipeline latency with ${n(l.streams)} open streams (${l.ratePerS} orders/s open loop, ${l.durationS} s per phase, same run)`,
      '',
      'Producer: from each order’s scheduled send time to its `Prefer: wait=10` answer (201, decided). Split with the write model’s timestamps of the same order: admission (scheduled → `accepted_at`), pipeline (`accepted_at` → `decided_at`), answer (`decided_at` → the wait’s answer received; `decided_at` is now() of the worker’s transaction, i.e. its start, so the answer includes the rest of that batch transaction and its commit, the decided step’s publication, the API’s read and its response). p50 / p99, ms.',
      '',
      '| phase | answered decided | **producer** | admission | pipeline | answer | generator lag p99 |',
      '|---|---|---|---|---|---|---|',
    );
    const pp = (s: { p50: number; p99: number }) => `${s.p50.toFixed(1)} / ${s.p99.toFixed(1)}`;
    for (const p of l.phases) {
      lines.push(
        `| ${p.label} | ${n(p.decided)}/${n(p.scheduled)} | **${pp(p.producerMs)}** | ${pp(p.admissionMs)} | ${pp(p.pipelineMs)} | ${pp(p.answerMs)} | ${p.lagMs.p99.toFixed(1)} |`,
      );
    }
    const base = l.phases.filter((p) => p.openStreams === 0);
    const loaded = l.phases.find((p) => p.openStreams > 0);
    if (base.length > 0 && loaded) {
      const avg = (f: (p: LatencyResult['phases'][number]) => number) =>
        base.reduce((s, p) => s + f(p), 0) / base.length;
      const sign = (x: number) => `${x >= 0 ? '+' : ''}${x.toFixed(1)}`;
      const d50 = loaded.producerMs.p50 - avg((p) => p.producerMs.p50);
      const d99 = loaded.producerMs.p99 - avg((p) => p.producerMs.p99);
      lines.push(
        '',
        `Added by ${n(l.streams)} open streams (producer latency, against the mean of the two no-stream phases): p50 ${sign(d50)} ms, p99 ${sign(d99)} ms.`,
      );
    }
    lines.push('');
  }
  if (r.webhooks) {
    lines.push(
      `## Webhook delivery throughput to a local receiver (${n(o.webhookOrders)} orders per run)`,
      '',
      '| endpoints | deliveries received / expected | first → last delivery | **deliveries/s** | orders decided/s | first order posted → last delivery | duplicates | missing | bad signatures | max attempts |',
      '|---|---|---|---|---|---|---|---|---|---|',
    );
    for (const w of r.webhooks) {
      lines.push(
        `| ${w.endpoints} | ${n(w.received)} / ${n(w.expected)} | ${(w.spanMs / 1000).toFixed(1)} s | **${n(w.deliveriesPerS)}** | ${n(w.ordersPerS)} | ${(w.totalMs / 1000).toFixed(1)} s | ${w.duplicates + w.orderDuplicates} | ${w.missing} | ${w.badSignatures} | ${w.maxAttempts} |`,
      );
    }
    lines.push('');
  }
  lines.push('## Checks', '');
  if (r.problems.length === 0) {
    lines.push(
      '- No wait was answered and no stream ended while measured; every latency order was answered decided within its wait and every stream stayed open through its phase.',
      '- Every delivery arrived exactly once per (endpoint, event): one webhook-id per endpoint and order, none repeated, none missing, every signature valid (checked by the receiver’s own HMAC, per Standard Webhooks).',
    );
  } else {
    for (const p of r.problems) lines.push(`- FAILED: ${p}`);
  }
  lines.push(
    '',
    '## How it was measured',
    '',
    '- The real processes (`api/main.ts`, `workers/main.ts`, started as the other scenarios start them: bench/stack.ts) on an isolated PostgreSQL schema and BullMQ prefix; BullMQ bus. Every client connection is held by a separate process (bench/results-bench/clients.ts), so neither its memory nor the bench’s is counted.',
    `- **Memory**: two API processes and no worker, so every order stays queued (${n(o.connections + 50)} orders posted through the batch route). One API holds ${n(o.connections)} \`GET /v1/orders/{id}\` with \`Prefer: wait=${o.waitSeconds}\`, the other ${n(o.connections)} \`GET /v1/orders/{id}/events\` streams, each on a distinct order; 50 of each were opened and closed first (warm-up, not counted). The API’s inspector is switched on (SIGUSR1, \`--inspect-port=0\`); before, while open (from 2 s after the last was sent, sampled each second until the heap stops growing: within 3%) and after closing (sampled every 1.5 s until the heap is back within 10% of what the connections took — a check that nothing is kept; “released in” is when that sample was taken), two full GCs are forced through it (\`HeapProfiler.collectGarbage\`) and \`Runtime.getHeapUsage\` and /proc/<pid>/status VmRSS are read. Per connection = (open − idle) / connections; the heap is the figure to read, RSS moves with what the allocator keeps or returns (it can end below idle). The client checks no wait was answered and no stream ended meanwhile.`,
    `- **Latency**: one API and one worker process running outbox, projections and orders — no refunds worker, so ${n(o.connections)} refunds (of one completed order) stay queued and their streams (\`GET /v1/refunds/{id}/events\`) stay open, heartbeats included. Open-loop POST /v1/orders with \`Prefer: wait=10\` at ${o.ratePerS}/s for ${o.latencySeconds} s from a process of its own (bench/open-loop.ts’s schedule: request i leaves at t0 + i/rate whatever earlier ones did; latency from that scheduled time, so queueing anywhere counts; every request kept, to split it against the write model): with no stream open, with ${n(o.connections)} open, and with none again (a drift check), after a 3 s warm-up.`,
    `- **Webhooks**: one API and one worker process (every kind); a node:http receiver in its own process answering 204. For each endpoint count, that many endpoints registered (\`POST /v1/webhooks\`, \`order.*\`, URLs on 127.0.0.1, allowed outside production), ${n(o.webhookOrders)} orders posted through the batch route, deliveries/s = received / (last − first received). The receiver verifies each signature and counts per endpoint by webhook-id and order id; the write model’s \`webhook_deliveries\` gives the attempts. Deliveries go live, while the orders are processed: the orders’ own rate is shown beside it. Defaults: per-endpoint in-flight limit ${o.platformEnv.WEBHOOKS_ENDPOINT_MAX_IN_FLIGHT ?? '10 (WEBHOOKS_ENDPOINT_MAX_IN_FLIGHT)'}, webhooks concurrency 200 per worker process.`,
    '',
  );
  return `${lines.join('\n')}\n`;
}
