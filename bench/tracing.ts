import { execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, rmSync, symlinkSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadConfig } from '../shared/config/config.ts';
import { createPool } from '../shared/db/pool.ts';
import { isolatedEnv } from '../test/support/env.ts';
import { cleanup } from '../test/support/platform.ts';
import { MODULES } from '../modules/registry.ts';

/**
 * What tracing costs (`node --import tsx bench/tracing.ts [orders] [rounds] [concurrency]`): the
 * all-in-one process (`main.ts`, BullMQ bus) started as `npm start` starts it, N orders posted over
 * HTTP at a fixed concurrency, timed until every one is in the read model. Three modes, interleaved
 * round by round so machine noise hits each alike:
 *   - `base`: this repository's last commit (`git archive HEAD`, read-only) — no tracing code at all;
 *   - `off`:  the working tree, tracing register loaded, OTEL_* unset (the default);
 *   - `on`:   the working tree with OTEL_TRACES_EXPORTER=otlp to a local sink answering 200 (the
 *             SDK's whole cost: spans, PostgreSQL instrumentation, batch export over HTTP/protobuf).
 */
const ROOT = fileURLToPath(new URL('../', import.meta.url));
const [orders = 3000, rounds = 3, concurrency = 32] = process.argv.slice(2).map(Number);

function baseTree(): string {
  const dir = mkdtempSync(join(tmpdir(), 'conveyor-bench-base-'));
  execFileSync('bash', ['-c', `git -C "${ROOT}" archive HEAD | tar -x -C "${dir}"`]);
  symlinkSync(join(ROOT, 'node_modules'), join(dir, 'node_modules'));
  return dir;
}

async function otlpSink(): Promise<{ server: Server; url: string; requests: () => number }> {
  let n = 0;
  const server = createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      n++;
      res.writeHead(200, { 'content-type': 'application/x-protobuf' }).end();
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as { port: number };
  return { server, url: `http://127.0.0.1:${port}`, requests: () => n };
}

type Mode = 'base' | 'off' | 'on';

async function runOnce(mode: Mode, cwd: string, sinkUrl: string): Promise<{ perS: number; apiPerS: number }> {
  const env = isolatedEnv({
    LOG_LEVEL: 'info',
    REDIS_REQUIRE_NOEVICTION: 'false',
    REDIS_REQUIRE_AOF: 'false',
    ...(mode === 'on' ? { OTEL_TRACES_EXPORTER: 'otlp', OTEL_EXPORTER_OTLP_ENDPOINT: sinkUrl } : {}),
  });
  const imports = mode === 'base' ? [] : ['--import', './shared/observability/tracing/register.ts'];
  const child = spawn(process.execPath, ['--import', 'tsx', ...imports, 'main.ts'], {
    cwd,
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const port = await new Promise<number>((resolve, reject) => {
    let buf = '';
    child.stdout!.on('data', (c: Buffer) => {
      buf += c.toString('utf8');
      const m = /"api listening"[^\n]*"port":(\d+)|"port":(\d+)[^\n]*"api listening"/.exec(buf);
      if (m) resolve(Number(m[1] ?? m[2]));
      if (buf.length > 1_000_000) buf = buf.slice(-10_000);
    });
    child.once('exit', (code) => reject(new Error(`${mode}: exited ${code}`)));
  });
  child.stdout!.resume();
  const config = loadConfig(env, { modules: MODULES });
  const pool = createPool({ ...config.database, poolMax: 1 });
  const url = `http://127.0.0.1:${port}/v1/orders`;
  const body = (i: number) =>
    JSON.stringify({
      customerId: `c-${i % 97}`,
      currency: 'EUR',
      items: [{ sku: 'sku-1', quantity: 1, unitPriceCents: 1000 + (i % 13) }],
    });
  const t0 = performance.now();
  let next = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < orders) {
        const i = next++;
        const res = await fetch(url, {
          method: 'POST',
          headers: { authorization: 'Bearer dev', 'content-type': 'application/json' },
          body: body(i),
        });
        if (res.status !== 202) throw new Error(`${mode}: POST answered ${res.status}`);
        await res.arrayBuffer();
      }
    }),
  );
  const posted = performance.now();
  for (;;) {
    const { rows } = await pool.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM "${config.database.schema}".order_view`,
    );
    if (rows[0]!.n >= orders) break;
    await new Promise((r) => setTimeout(r, 20));
  }
  const done = performance.now();
  await pool.end();
  const exited = new Promise((r) => child.once('exit', r));
  child.kill('SIGTERM');
  await exited;
  await cleanup(config);
  return {
    perS: Math.round((orders * 1000) / (done - t0)),
    apiPerS: Math.round((orders * 1000) / (posted - t0)),
  };
}

const base = baseTree();
const sink = await otlpSink();
const results: Record<Mode, { perS: number; apiPerS: number }[]> = { base: [], off: [], on: [] };
try {
  for (let round = 1; round <= rounds; round++) {
    for (const mode of ['base', 'off', 'on'] as const) {
      const r = await runOnce(mode, mode === 'base' ? base : ROOT, sink.url);
      results[mode].push(r);
      process.stdout.write(`round ${round} ${mode}: ${r.perS} orders/s end to end, API ${r.apiPerS} req/s\n`);
    }
  }
} finally {
  sink.server.close();
  rmSync(base, { recursive: true, force: true });
}
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
process.stdout.write(
  `\n${orders} orders × ${rounds} rounds, concurrency ${concurrency}; OTLP export requests: ${sink.requests()}\n`,
);
process.stdout.write(
  '| mode | end-to-end orders/s (median) | all runs | API req/s (median) |\n| --- | --- | --- | --- |\n',
);
for (const mode of ['base', 'off', 'on'] as const) {
  const e2e = results[mode].map((r) => r.perS);
  const api = results[mode].map((r) => r.apiPerS);
  process.stdout.write(`| ${mode} | ${median(e2e)} | ${e2e.join(', ')} | ${median(api)} |\n`);
}
