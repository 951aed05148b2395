// The connection holder of `npm run bench -- --results`, forked as a process of its own (run with
// --experimental-websocket), so the connections' client-side memory is never counted in the API's or
// the bench's. Commands arrive over IPC (see ClientCommand); every command is answered once.
import { Agent, request, type ClientRequest } from 'node:http';
import { z } from 'zod';
import { scheduledAtMs } from '../open-loop.ts';

const ClientCommand = z.discriminatedUnion('type', [
  z.object({
    type: z.literal('open'),
    /** `wait`: GET with `Prefer: wait=<waitS>`, open until answered; `stream`: an SSE stream. */
    kind: z.enum(['wait', 'stream']),
    base: z.url(),
    paths: z.array(z.string()),
    waitS: z.number().int().min(1).default(30),
  }),
  z.object({ type: z.literal('status') }),
  /** An open-loop run of POSTs whose every request is reported (see runLoad). */
  z.object({
    type: z.literal('load'),
    base: z.url(),
    path: z.string().startsWith('/'),
    headers: z.record(z.string(), z.string()),
    body: z.string(),
    ratePerS: z.number().positive().max(10_000),
    durationS: z.number().positive().max(600),
    timeoutMs: z.number().int().min(100).max(120_000),
  }),
  z.object({ type: z.literal('close') }),
  /** A full GC of the inspected process, then its V8 heap (Chrome DevTools Protocol over its inspector). */
  z.object({ type: z.literal('heap'), wsUrl: z.string().startsWith('ws://127.0.0.1:') }),
]);

/** The few members of the WebSocket global (Node 20 with --experimental-websocket) used here. */
interface MinimalWebSocket {
  onopen: (() => void) | null;
  onerror: ((e: unknown) => void) | null;
  onmessage: ((e: { data: unknown }) => void) | null;
  send(data: string): void;
}
type WebSocketCtor = new (url: string) => MinimalWebSocket;

const send = (message: unknown) => process.send?.(message);

const agent = new Agent({ keepAlive: false, maxSockets: Infinity });
let requests: ClientRequest[] = [];
let open = 0;
let answered = 0;
let errors = 0;
/** Streams the server ended (it must not, while their commands stay queued). */
let ended = 0;
/** Bumped by `close`: events of the connections it destroyed no longer count. */
let generation = 0;

function openAll(kind: 'wait' | 'stream', base: string, paths: readonly string[], waitS: number): void {
  const started = performance.now();
  const gen = generation;
  const live = () => gen === generation;
  let ready = 0;
  const oneReady = () => {
    ready += 1;
    if (ready === paths.length)
      send({ type: 'opened', n: ready, ms: Math.round(performance.now() - started) });
  };
  for (const path of paths) {
    const url = new URL(path, base);
    const headers: Record<string, string> = { authorization: 'Bearer dev' };
    if (kind === 'wait') headers.prefer = `wait=${waitS}`;
    else headers.accept = 'text/event-stream';
    let counted = false;
    const req = request(url, { agent, headers }, (res) => {
      if (kind === 'wait') {
        // A wait answers only when it ends (decided, or timed out): while measuring, none may.
        if (live()) answered += 1;
        res.resume();
        return;
      }
      res.once('data', () => {
        if (!live()) return;
        counted = true;
        open += 1;
        oneReady();
      });
      res.on('end', () => {
        if (!live()) return;
        ended += 1;
        if (counted) open -= 1;
      });
      res.on('error', () => undefined);
    });
    req.on('error', () => {
      if (!live()) return;
      errors += 1;
      if (!counted) {
        counted = true;
        oneReady();
      }
    });
    if (kind === 'wait') {
      // Sent and connected: the server holds it from here (checked by the caller: none answered).
      req.on('finish', () => {
        if (!live()) return;
        counted = true;
        open += 1;
        oneReady();
      });
    }
    req.end();
    requests.push(req);
  }
  if (paths.length === 0) send({ type: 'opened', n: 0, ms: 0 });
}

/** One request of a `load` run: epoch ms; `endMs` and `status` NaN/0 when it got no answer. */
export interface LoadRecord {
  scheduledMs: number;
  lagMs: number;
  endMs: number;
  status: number;
  orderId: string | null;
}

/**
 * The open loop of bench/open-loop.ts (request i leaves at t0 + i/rate, whatever earlier ones did;
 * keep-alive sockets, 512 at most), but every request is reported with its scheduled time, so its
 * latency can be split against the write model's timestamps of the same order.
 */
function runLoad(c: {
  base: string;
  path: string;
  headers: Record<string, string>;
  body: string;
  ratePerS: number;
  durationS: number;
  timeoutMs: number;
}): void {
  const count = Math.max(1, Math.round(c.ratePerS * c.durationS));
  const url = new URL(c.path, c.base);
  const loadAgent = new Agent({ keepAlive: true, maxSockets: 512, maxFreeSockets: 512, scheduling: 'fifo' });
  const body = Buffer.from(c.body);
  const records: LoadRecord[] = [];
  let settled = 0;
  const settle = () => {
    settled += 1;
    if (settled === count) {
      loadAgent.destroy();
      send({ type: 'loaded', records });
    }
  };
  const origin = performance.timeOrigin;
  const t0 = performance.now() + 5;
  const fire = (i: number) => {
    const due = t0 + scheduledAtMs(i, c.ratePerS);
    const rec: LoadRecord = {
      scheduledMs: origin + due,
      lagMs: performance.now() - due,
      endMs: NaN,
      status: 0,
      orderId: null,
    };
    records[i] = rec;
    let done = false;
    const finish = () => {
      if (done) return;
      done = true;
      settle();
    };
    const req = request(
      url,
      { agent: loadAgent, method: 'POST', headers: { ...c.headers, 'content-length': body.length } },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (b: Buffer) => chunks.push(b));
        res.on('end', () => {
          rec.endMs = origin + performance.now();
          rec.status = res.statusCode ?? 0;
          const m = /"orderId":"([^"]+)"/.exec(Buffer.concat(chunks).toString('utf8'));
          rec.orderId = m?.[1] ?? null;
          finish();
        });
        res.on('error', finish);
      },
    );
    req.setTimeout(c.timeoutMs, () => {
      req.destroy();
      finish();
    });
    req.on('error', finish);
    req.end(body);
  };
  let next = 0;
  const tick = () => {
    const now = performance.now();
    while (next < count && t0 + scheduledAtMs(next, c.ratePerS) <= now) fire(next++);
    if (next >= count) return;
    const wait = t0 + scheduledAtMs(next, c.ratePerS) - performance.now();
    if (wait >= 1) setTimeout(tick, Math.floor(wait));
    else setImmediate(tick);
  };
  setTimeout(tick, 5);
}

const inspectors = new Map<string, Promise<(method: string) => Promise<Record<string, unknown>>>>();

/** One DevTools Protocol session per inspected process, kept for the whole run. */
function inspector(wsUrl: string): Promise<(method: string) => Promise<Record<string, unknown>>> {
  let session = inspectors.get(wsUrl);
  if (!session) {
    session = new Promise((resolve, reject) => {
      const Ctor = (globalThis as { WebSocket?: WebSocketCtor }).WebSocket;
      if (!Ctor) return reject(new Error('no WebSocket global: run with --experimental-websocket'));
      const ws = new Ctor(wsUrl);
      let next = 0;
      const pending = new Map<number, (result: Record<string, unknown>) => void>();
      ws.onmessage = (e) => {
        const m = JSON.parse(String(e.data)) as { id?: number; result?: Record<string, unknown> };
        if (m.id !== undefined) pending.get(m.id)?.(m.result ?? {});
        if (m.id !== undefined) pending.delete(m.id);
      };
      ws.onerror = () => reject(new Error(`inspector ${wsUrl} unreachable`));
      ws.onopen = () =>
        resolve(
          (method) =>
            new Promise((done) => {
              const id = ++next;
              pending.set(id, done);
              ws.send(JSON.stringify({ id, method }));
            }),
        );
    });
    inspectors.set(wsUrl, session);
  }
  return session;
}

process.on('message', (raw) => {
  const parsed = ClientCommand.safeParse(raw);
  if (!parsed.success) return send({ type: 'error', error: parsed.error.message });
  const c = parsed.data;
  if (c.type === 'open') return openAll(c.kind, c.base, c.paths, c.waitS);
  if (c.type === 'load') return runLoad(c);
  if (c.type === 'status') return send({ type: 'status', open, answered, errors, ended });
  if (c.type === 'close') {
    generation += 1;
    for (const r of requests) r.destroy();
    requests = [];
    open = 0;
    answered = 0;
    errors = 0;
    ended = 0;
    return send({ type: 'closed' });
  }
  void (async () => {
    try {
      const call = await inspector(c.wsUrl);
      // Twice: the first full GC may leave what finalizers free to the second.
      await call('HeapProfiler.collectGarbage');
      await call('HeapProfiler.collectGarbage');
      const usage = await call('Runtime.getHeapUsage');
      send({ type: 'heap', usedSize: Number(usage.usedSize), totalSize: Number(usage.totalSize) });
    } catch (err) {
      send({ type: 'error', error: err instanceof Error ? err.message : String(err) });
    }
  })();
});
process.on('disconnect', () => process.exit(0));
send({ type: 'ready' });
