import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { eventually } from './env.ts';
import { alive, onTestExit } from './owned-process.ts';
import { freePort } from './redis-server.ts';

const run = promisify(execFile);
const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const ZIPKIN_SH = join(ROOT, 'scripts/zipkin/zipkin.sh');

/** A span as Zipkin's v2 API answers it. */
export interface ZipkinSpan {
  traceId: string;
  id: string;
  parentId?: string;
  name?: string;
  /** Absent for internal spans. */
  kind?: 'SERVER' | 'CLIENT' | 'PRODUCER' | 'CONSUMER';
  localEndpoint?: { serviceName?: string };
  tags?: Record<string, string>;
}

export interface OwnZipkin {
  /** `http://127.0.0.1:<port>` */
  url: string;
  /** Where exporters post spans: `<url>/api/v2/spans` (OTEL_EXPORTER_ZIPKIN_ENDPOINT). */
  spansEndpoint: string;
  /** The spans Zipkin holds for a trace id ([] when none yet). */
  trace(traceId: string): Promise<ZipkinSpan[]>;
  /** Trace ids of the traces holding a span tagged `key=value` (Zipkin's annotationQuery). */
  traceIdsTagged(key: string, value: string): Promise<string[]>;
  destroy(): Promise<void>;
}

/**
 * A private Zipkin server (in-memory storage) on a spare port: the jar fetched with Maven into
 * `.cache/zipkin/` (scripts/zipkin/zipkin.sh), `java -jar`, ready when `/health` answers 200.
 */
export async function ownZipkin(options: { readyTimeoutMs?: number } = {}): Promise<OwnZipkin> {
  await run('bash', [ZIPKIN_SH, 'fetch'], { timeout: 900_000 });
  const port = await freePort();
  const child: ChildProcess = spawn('bash', [ZIPKIN_SH, 'run', String(port)], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const output: string[] = [];
  child.stdout?.on('data', (c: Buffer) => output.push(c.toString('utf8')));
  child.stderr?.on('data', (c: Buffer) => output.push(c.toString('utf8')));
  const unregister = onTestExit(() => child.kill('SIGKILL'));
  const url = `http://127.0.0.1:${port}`;
  await eventually(
    async () => {
      if (!alive(child)) throw new Error(`zipkin exited:\n${output.join('').slice(-2_000)}`);
      return (await fetch(`${url}/health`)).status === 200;
    },
    { timeoutMs: options.readyTimeoutMs ?? 90_000, intervalMs: 250, what: 'Zipkin to answer /health' },
  );
  return {
    url,
    spansEndpoint: `${url}/api/v2/spans`,
    async trace(traceId) {
      const res = await fetch(`${url}/api/v2/trace/${traceId}`);
      if (res.status === 404) return [];
      if (!res.ok) throw new Error(`zipkin trace ${traceId}: ${res.status}`);
      return (await res.json()) as ZipkinSpan[];
    },
    async traceIdsTagged(key, value) {
      const q = new URLSearchParams({
        annotationQuery: `${key}=${value}`,
        limit: '100',
        lookback: '3600000',
      });
      const res = await fetch(`${url}/api/v2/traces?${q}`);
      if (!res.ok) throw new Error(`zipkin traces: ${res.status}`);
      const traces = (await res.json()) as ZipkinSpan[][];
      return [...new Set(traces.flatMap((t) => t.map((s) => s.traceId)))];
    },
    async destroy() {
      unregister();
      if (!alive(child)) return;
      const exited = new Promise((r) => child.once('exit', r));
      child.kill('SIGTERM');
      await exited;
    },
  };
}
