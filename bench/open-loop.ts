import { Agent, request, type IncomingMessage } from 'node:http';
import { percentile } from './percentile.ts';

/**
 * An open-loop HTTP load generator. Request `i` is scheduled at `t0 + i / rate` and leaves then,
 * whether or not earlier requests have answered (no coordinated omission: a slow server cannot slow
 * the offered load down, as it does a closed loop of N connections). Its latency is counted from its
 * scheduled time to the end of its response, so time spent waiting — in the server's queue, for a free
 * socket, or in a late generator — is in the latency. The generator's own lag (how late each request
 * left compared with its schedule) is reported separately, so a starved generator is visible.
 *
 * node:http with keep-alive agents (lighter than fetch), many sockets per target; bounded in count and
 * time; loopback targets only.
 */

export interface OpenLoopOptions {
  /** Base URLs (`http://127.0.0.1:<port>`), loopback only; requests go round-robin over them. */
  urls: readonly string[];
  /** Offered rate, requests per second (all targets together). */
  ratePerS: number;
  /** Schedule length, seconds. count = round(rate × duration), capped by `maxRequests`. */
  durationS: number;
  path?: string;
  method?: string;
  headers?: Record<string, string>;
  /** The request body (the same for every request), or one per request index. */
  body?: string | ((i: number) => string);
  /** Status that counts as accepted. @defaultValue 202 */
  acceptStatus?: number;
  /** A request whose socket stays silent this many ms is destroyed and counted as a timeout. @defaultValue 10000 */
  timeoutMs?: number;
  /** After the last scheduled time, how long outstanding requests may still take. @defaultValue 15000 */
  drainMs?: number;
  /** Sockets per target; a request that finds none free waits in the agent (that wait is latency). @defaultValue 512 */
  socketsPerTarget?: number;
  /** Hard cap on requests. @defaultValue 500000 */
  maxRequests?: number;
  /** Accepted responses' `orderId` (or `idField`) values are pushed here, to verify by counting. */
  acceptedIds?: string[];
  /** JSON string field of an accepted response collected into `acceptedIds`. @defaultValue 'orderId' */
  idField?: string;
}

export interface LatencySummary {
  mean: number;
  p50: number;
  p90: number;
  p99: number;
  p999: number;
  max: number;
}

export interface OpenLoopResult {
  offeredPerS: number;
  targets: number;
  /** Requests scheduled. */
  scheduled: number;
  /** Requests that left (the rest had not when the run was bounded; normally equal to `scheduled`). */
  sent: number;
  /** Responses with `acceptStatus`. */
  accepted: number;
  /** Other statuses, by code. */
  rejected: Record<string, number>;
  /** Connection errors (refused, reset, ...). */
  errors: number;
  /** Requests destroyed at `timeoutMs` or still outstanding at the end of `drainMs`. */
  timeouts: number;
  /** Accepted per second over the run: from t0 to the later of the schedule's end and the last response. */
  achievedPerS: number;
  /** Response end − scheduled time, ms, of every answered request (any status). */
  latencyMs: LatencySummary;
  /** Left − scheduled time, ms: the generator's own lateness (a starved generator shows here). */
  lagMs: LatencySummary;
  /** Requests that waited in the agent for a free socket (socket pool too small, or server saturated). */
  socketWaits: number;
  /** The generator's CPU over the run, in cores. */
  generatorCpuCores: number;
  /** Schedule length and wall time of the whole run (schedule + drain), seconds. */
  scheduleS: number;
  wallS: number;
  startedAt: number;
  finishedAt: number;
}

const LOOPBACK = new Set(['127.0.0.1', 'localhost', '[::1]', '::1']);

/** Scheduled send time of request `i` at `ratePerS`, in ms after t0. */
export function scheduledAtMs(i: number, ratePerS: number): number {
  return (i * 1000) / ratePerS;
}

const round3 = (n: number) => Math.round(n * 1000) / 1000;

/** Mean and nearest-rank percentiles of `values` (any order; NaN entries ignored), rounded to µs. */
export function summarize(values: ArrayLike<number>): LatencySummary {
  const sorted = Float64Array.from(values)
    .filter((v) => !Number.isNaN(v))
    .sort();
  if (sorted.length === 0) return { mean: 0, p50: 0, p90: 0, p99: 0, p999: 0, max: 0 };
  let sum = 0;
  for (const v of sorted) sum += v;
  return {
    mean: round3(sum / sorted.length),
    p50: round3(percentile(sorted, 50)),
    p90: round3(percentile(sorted, 90)),
    p99: round3(percentile(sorted, 99)),
    p999: round3(percentile(sorted, 99.9)),
    max: round3(sorted[sorted.length - 1]!),
  };
}

/** The value of string field `field` in a JSON body, without parsing it all (cheap for the generator). */
function stringField(body: string, field: string): string | undefined {
  const key = `"${field}":"`;
  const at = body.indexOf(key);
  if (at < 0) return undefined;
  const end = body.indexOf('"', at + key.length);
  return end < 0 ? undefined : body.slice(at + key.length, end);
}

/**
 * Runs one open-loop phase and resolves once every request has answered, failed or timed out.
 * @example const r = await runOpenLoop({ urls: ['http://127.0.0.1:3000'], ratePerS: 1500, durationS: 5, path: '/v1/orders', method: 'POST', headers, body, acceptedIds: ids });
 */
export async function runOpenLoop(o: OpenLoopOptions): Promise<OpenLoopResult> {
  if (o.urls.length === 0) throw new Error('open loop: no target URLs');
  if (!(o.ratePerS > 0)) throw new Error('open loop: ratePerS must be > 0');
  if (!(o.durationS > 0) || o.durationS > 600) throw new Error('open loop: durationS must be in (0, 600]');
  const targets = o.urls.map((u) => {
    const url = new URL(o.path ?? '/', u);
    if (url.protocol !== 'http:' || !LOOPBACK.has(url.hostname))
      throw new Error(`open loop: loopback http targets only, not ${u}`);
    const hostname = url.hostname.replace(/^\[|\]$/g, '');
    const port = Number(url.port || 80);
    return { hostname, port, path: url.pathname + url.search, agentKey: `${hostname}:${port}:` };
  });
  const maxRequests = o.maxRequests ?? 500_000;
  const count = Math.max(1, Math.min(maxRequests, Math.round(o.ratePerS * o.durationS)));
  const sockets = o.socketsPerTarget ?? 512;
  const agents = targets.map(
    () => new Agent({ keepAlive: true, maxSockets: sockets, maxFreeSockets: sockets, scheduling: 'fifo' }),
  );
  const method = o.method ?? 'GET';
  const acceptStatus = o.acceptStatus ?? 202;
  const timeoutMs = o.timeoutMs ?? 10_000;
  const drainMs = o.drainMs ?? 15_000;
  const idField = o.idField ?? 'orderId';
  const fixedBody = typeof o.body === 'string' ? Buffer.from(o.body) : undefined;

  const latency = new Float64Array(count).fill(NaN);
  const lag = new Float64Array(count).fill(NaN);
  const rejected: Record<string, number> = {};
  let sent = 0;
  let accepted = 0;
  let errors = 0;
  let timeouts = 0;
  let socketWaits = 0;
  let settled = 0;
  let lastEnd = 0;
  /** Requests still out, with the function that settles each (once). */
  const outstanding = new Map<ReturnType<typeof request>, (kind: 'timeout') => void>();

  let resolveAll!: () => void;
  const allSettled = new Promise<void>((r) => (resolveAll = r));
  const settle = () => {
    settled += 1;
    if (settled === count) resolveAll();
  };

  const fire = (i: number, t0: number) => {
    const due = t0 + scheduledAtMs(i, o.ratePerS);
    lag[i] = performance.now() - due;
    const k = i % targets.length;
    const t = targets[k]!;
    const body = fixedBody ?? (typeof o.body === 'function' ? Buffer.from(o.body(i)) : undefined);
    const headers: Record<string, string | number> = { ...o.headers };
    if (body) headers['content-length'] = body.length;
    const queuedBefore = agents[k]!.requests[t.agentKey]?.length ?? 0;
    let done = false;
    const finish = (kind: 'ok' | 'error' | 'timeout') => {
      if (done) return;
      done = true;
      outstanding.delete(req);
      if (kind === 'error') errors += 1;
      if (kind === 'timeout') timeouts += 1;
      settle();
    };
    const req = request(
      { agent: agents[k], hostname: t.hostname, port: t.port, path: t.path, method, headers },
      (res: IncomingMessage) => {
        const status = res.statusCode ?? 0;
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('error', () => finish('error'));
        res.on('end', () => {
          if (done) return;
          const end = performance.now();
          latency[i] = end - due;
          lastEnd = Math.max(lastEnd, end);
          if (status === acceptStatus) {
            accepted += 1;
            if (o.acceptedIds) {
              const id = stringField(Buffer.concat(chunks).toString('utf8'), idField);
              if (id !== undefined) o.acceptedIds.push(id);
            }
          } else {
            rejected[status] = (rejected[status] ?? 0) + 1;
          }
          finish('ok');
        });
      },
    );
    outstanding.set(req, finish);
    // No free socket: the request waits in the agent's queue (that wait counts in its latency).
    if ((agents[k]!.requests[t.agentKey]?.length ?? 0) > queuedBefore) socketWaits += 1;
    req.setTimeout(timeoutMs, () => {
      finish('timeout');
      req.destroy();
    });
    req.on('error', () => finish('error'));
    req.end(body);
    sent += 1;
  };

  const cpuAtStart = process.cpuUsage();
  const startedAt = Date.now();
  const t0 = performance.now() + 5; // a few ms to get the first timer armed on time
  let next = 0;
  let timer: NodeJS.Timeout | undefined;
  let immediate: NodeJS.Immediate | undefined;
  const tick = () => {
    const now = performance.now();
    // Every request whose time has come leaves now: a late generator sends in a burst (and reports lag).
    while (next < count && t0 + scheduledAtMs(next, o.ratePerS) <= now) fire(next++, t0);
    if (next >= count) return;
    const wait = t0 + scheduledAtMs(next, o.ratePerS) - performance.now();
    if (wait >= 1) timer = setTimeout(tick, Math.floor(wait));
    else immediate = setImmediate(tick);
  };
  timer = setTimeout(tick, 5);

  const scheduleEnd = t0 + scheduledAtMs(count - 1, o.ratePerS);
  let drainTimer: NodeJS.Timeout | undefined;
  const deadline = new Promise<void>((r) => {
    const arm = () => {
      // The drain window starts at the schedule's end (even if the generator is late getting there).
      const left = scheduleEnd + drainMs - performance.now();
      drainTimer = setTimeout(() => (next >= count ? r() : arm()), Math.max(10, left));
    };
    arm();
  });
  await Promise.race([allSettled, deadline]);
  clearTimeout(drainTimer);
  clearTimeout(timer);
  clearImmediate(immediate);
  for (const [req, finish] of [...outstanding]) {
    finish('timeout'); // settles it first: the 'error' that destroy() causes is then ignored
    req.destroy();
  }
  for (const a of agents) a.destroy();
  const finishedAt = Date.now();
  const cpu = process.cpuUsage(cpuAtStart);
  const wallS = (performance.now() - t0) / 1000;
  const scheduleS = count / o.ratePerS;
  const spanS = Math.max(scheduleS, (lastEnd - t0) / 1000);
  return {
    offeredPerS: o.ratePerS,
    targets: targets.length,
    scheduled: count,
    sent,
    accepted,
    rejected,
    errors,
    timeouts,
    achievedPerS: Math.round(accepted / spanS),
    latencyMs: summarize(latency),
    lagMs: summarize(lag.subarray(0, sent)),
    socketWaits,
    generatorCpuCores: Math.round(((cpu.user + cpu.system) / 1e6 / Math.max(0.001, wallS)) * 100) / 100,
    scheduleS: round3(scheduleS),
    wallS: round3(wallS),
    startedAt,
    finishedAt,
  };
}

/** One line for logs: `1500/s offered → 1498/s, p50 3.1 p99 8.2 max 20 ms, lag p99 0.4 ms, 0 errors`. */
export function describeOpenLoop(r: OpenLoopResult): string {
  const rej = Object.entries(r.rejected)
    .map(([s, n]) => `${n}×${s}`)
    .join(' ');
  return `${r.offeredPerS}/s offered → ${r.achievedPerS}/s accepted (${r.accepted}/${r.scheduled}), p50 ${r.latencyMs.p50} p90 ${r.latencyMs.p90} p99 ${r.latencyMs.p99} p99.9 ${r.latencyMs.p999} max ${r.latencyMs.max} ms; generator lag p99 ${r.lagMs.p99} max ${r.lagMs.max} ms, ${r.generatorCpuCores} cores; errors ${r.errors}, timeouts ${r.timeouts}${rej ? `, rejected ${rej}` : ''}`;
}
