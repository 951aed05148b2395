import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { eventually } from './env.ts';
import { alive, onTestExit, tail } from './owned-process.ts';
import { freePort } from './redis-server.ts';

const run = promisify(execFile);
const ROOT = fileURLToPath(new URL('../../', import.meta.url));
/** Jars, config and java command line — the same ones `npm run brokers` uses. */
const ELASTICMQ_SH = join(ROOT, 'scripts/sqs/elasticmq.sh');
/** Ready = the server answers ListQueues. */
const WAIT_READY = join(ROOT, 'scripts/sqs/wait-ready.mjs');

export interface OwnElasticmq {
  /** `http://127.0.0.1:<port>`: the value for `SQS_ENDPOINT`. */
  endpoint: string;
  port: number;
  /** Its temp dir: `elasticmq.conf`, `elasticmq.out`. */
  dir: string;
  /** The server's pid while it runs. */
  readonly pid: number | undefined;
  /** Starts the server (again: same port; in memory, so empty) and waits until it answers ListQueues. */
  start(): Promise<void>;
  /** Stops it and waits for the exit: SIGTERM = a shutdown, SIGKILL = a crash. No-op when not running. */
  stop(signal?: 'SIGTERM' | 'SIGKILL'): Promise<void>;
  /** Kills it if running and removes its dir. Idempotent. */
  destroy(): Promise<void>;
}

export interface OwnElasticmqOptions {
  /** Max heap (java -Xmx). @defaultValue '192m' */
  heap?: string;
  /** @defaultValue 60000 */
  readyTimeoutMs?: number;
}

const running = new Set<ChildProcess>();
const dirs = new Set<string>();
const cleanupOnExit = (): void => {
  for (const child of running) child.kill('SIGKILL');
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
};

/** Makes sure the ElasticMQ jars are cached (Maven, once), as `npm run brokers` does. */
export async function fetchElasticmqJars(): Promise<void> {
  try {
    await run('bash', [ELASTICMQ_SH, 'fetch'], { cwd: ROOT, timeout: 600_000 });
  } catch (err) {
    const { stderr } = err as { stderr?: string };
    throw new Error(`fetching the ElasticMQ jars failed: ${stderr?.trim() || (err as Error).message}`, {
      cause: err,
    });
  }
}

/**
 * A private in-memory ElasticMQ server for tests: a spare port, a temp dir, the jars `npm run brokers`
 * caches in `.cache/elasticmq/libs` (fetched first when missing). Ready in ~1-3 s.
 */
export async function ownElasticmq(options: OwnElasticmqOptions = {}): Promise<OwnElasticmq> {
  onTestExit(cleanupOnExit);
  const { heap = '192m', readyTimeoutMs = 60_000 } = options;
  await fetchElasticmqJars();
  const port = await freePort();
  const endpoint = `http://127.0.0.1:${port}`;
  const dir = mkdtempSync(join(tmpdir(), 'conveyor-elasticmq-'));
  dirs.add(dir);
  const logs = () => tail(join(dir, 'elasticmq.out'), 30);
  let child: ChildProcess | undefined;
  let exited: Promise<void> = Promise.resolve();
  let destroyed: Promise<void> | undefined;

  const exitsWithin = async (ms: number) => {
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<false>((resolve) => (timer = setTimeout(() => resolve(false), ms)));
    try {
      return await Promise.race([exited.then(() => true), late]);
    } finally {
      clearTimeout(timer);
    }
  };

  const self: OwnElasticmq = {
    endpoint,
    port,
    dir,
    get pid() {
      return alive(child) ? child?.pid : undefined;
    },
    async start() {
      if (destroyed) throw new Error('own elasticmq: start() after destroy()');
      if (alive(child)) return;
      const out = openSync(join(dir, 'elasticmq.out'), 'a');
      // elasticmq.sh execs java: the child's pid is the server's.
      const proc = spawn('bash', [ELASTICMQ_SH, 'run', dir, String(port), heap], {
        stdio: ['ignore', out, out],
      });
      closeSync(out);
      child = proc;
      running.add(proc);
      exited = new Promise((resolve) =>
        proc.once('exit', () => {
          running.delete(proc);
          resolve();
        }),
      );
      try {
        if (proc.pid === undefined) throw new Error('spawning bash failed');
        // Until bash has exec'd java, wait-ready's --pid check would take the server for dead.
        await eventually(
          () => {
            if (!alive(proc)) throw new Error(`exited (${proc.exitCode ?? proc.signalCode})`);
            return readFileSync(`/proc/${proc.pid}/cmdline`, 'utf8').includes('org.elasticmq');
          },
          { timeoutMs: 10_000, intervalMs: 10, what: 'elasticmq.sh to exec java' },
        );
        await run(
          process.execPath,
          [
            WAIT_READY,
            '--endpoint',
            endpoint,
            '--timeout',
            String(readyTimeoutMs / 1000),
            '--pid',
            String(proc.pid),
          ],
          { cwd: ROOT, timeout: readyTimeoutMs + 30_000 },
        );
      } catch (err) {
        await self.stop('SIGKILL');
        const { stderr } = err as { stderr?: string };
        throw new Error(
          `own elasticmq on ${endpoint} did not start: ${stderr?.trim() || (err as Error).message}\n${logs()}`,
          { cause: err },
        );
      }
    },
    async stop(signal = 'SIGTERM') {
      const proc = child;
      if (!proc || !alive(proc)) return;
      proc.kill(signal);
      if (signal !== 'SIGKILL' && !(await exitsWithin(20_000))) proc.kill('SIGKILL');
      if (!(await exitsWithin(10_000)))
        throw new Error(`own elasticmq (pid ${proc.pid}) did not exit after SIGKILL`);
    },
    destroy: () =>
      (destroyed ??= (async () => {
        await self.stop('SIGKILL');
        rmSync(dir, { recursive: true, force: true });
        dirs.delete(dir);
      })()),
  };
  try {
    await self.start();
  } catch (err) {
    await self.destroy();
    throw err;
  }
  return self;
}

/** Whether an SQS server answers ListQueues at `endpoint`. */
export async function sqsAnswers(endpoint: string): Promise<boolean> {
  try {
    await run(process.execPath, [WAIT_READY, '--endpoint', endpoint, '--timeout', '0'], { cwd: ROOT });
    return true;
  } catch {
    return false;
  }
}

let shared: Promise<{ endpoint: string; own?: OwnElasticmq }> | undefined;

/**
 * The SQS endpoint tests use: the machine's server (`SQS_ENDPOINT`, default the one `npm run brokers`
 * starts on 127.0.0.1:9324) when it answers, else one private server for this test file, started on
 * first use (jars fetched if needed); {@link releaseSqsEndpoint} in `afterAll` stops it. Tests isolate
 * themselves by queue prefix, never by server.
 */
export async function sqsEndpoint(): Promise<string> {
  shared ??= (async () => {
    const machine = process.env.SQS_ENDPOINT ?? 'http://127.0.0.1:9324';
    if (await sqsAnswers(machine)) return { endpoint: machine };
    const own = await ownElasticmq();
    return { endpoint: own.endpoint, own };
  })();
  return (await shared).endpoint;
}

/** Stops the private server {@link sqsEndpoint} started, if it did (the machine's is left alone). */
export async function releaseSqsEndpoint(): Promise<void> {
  const s = shared;
  shared = undefined;
  await (await s?.catch(() => undefined))?.own?.destroy();
}
