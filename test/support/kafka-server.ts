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
/** The broker's config, format step and java command line — the same ones `npm run brokers` uses. */
const BROKER_SH = join(ROOT, 'scripts/kafka/broker.sh');
/** Ready = a kafkajs admin fetches metadata; `--warm` also waits for the group coordinator. */
const WAIT_READY = join(ROOT, 'scripts/kafka/wait-ready.mjs');

export interface OwnKafka {
  /** `127.0.0.1:<port>`: the value for `KAFKA_BROKERS`. */
  brokers: string;
  port: number;
  controllerPort: number;
  /** Its temp dir: `data/`, `logs/server.log`, `kafka.out`, the config files. */
  dir: string;
  /** The broker's pid while it runs. */
  readonly pid: number | undefined;
  /** Starts the broker (again: same ports, same data) and waits until it answers metadata requests. */
  start(): Promise<void>;
  /**
   * Stops it and waits for the exit: SIGTERM = a controlled shutdown (SIGKILL if it has not exited
   * after `stopTimeoutMs`), SIGKILL = a crash. No-op when it is not running.
   */
  stop(signal?: 'SIGTERM' | 'SIGKILL'): Promise<void>;
  /** Kills it if running and removes its dir. Idempotent. */
  destroy(): Promise<void>;
}

export interface OwnKafkaOptions {
  /** Max heap (java -Xmx). @defaultValue '384m' */
  heap?: string;
  /** @defaultValue 90000 */
  readyTimeoutMs?: number;
  /** How long a SIGTERM'd broker gets before SIGKILL. @defaultValue 30000 */
  stopTimeoutMs?: number;
}

// Brokers still running and dirs not yet removed when the test process exits (a failed or aborted run).
const running = new Set<ChildProcess>();
const dirs = new Set<string>();
const cleanupOnExit = (): void => {
  for (const child of running) child.kill('SIGKILL');
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
};

/**
 * A private single-node KRaft Kafka broker for tests that stop, crash or restart Kafka: spare ports
 * (broker and controller), a temp data dir, a small heap, the jars `npm run brokers` cached in
 * `.cache/kafka/libs`. The machine's broker on 9092 — or whatever answers there — is never touched.
 *
 * On a busy 2-core machine: ready ~6-9 s after `ownKafka()` (formatting its storage, once, is ~2.5 s of
 * that), ~5-7 s after a restart; a SIGTERM stop takes <1 s.
 */
export async function ownKafka(options: OwnKafkaOptions = {}): Promise<OwnKafka> {
  onTestExit(cleanupOnExit);
  const { heap = '384m', readyTimeoutMs = 90_000, stopTimeoutMs = 30_000 } = options;
  const port = await freePort();
  let controllerPort = await freePort();
  while (controllerPort === port) controllerPort = await freePort();
  const brokers = `127.0.0.1:${port}`;
  const dir = mkdtempSync(join(tmpdir(), 'conveyor-kafka-'));
  dirs.add(dir);
  const logs = () => tail(join(dir, 'logs', 'server.log'), 30) + tail(join(dir, 'kafka.out'), 20);

  try {
    await run('bash', [BROKER_SH, 'prepare', dir, String(port), String(controllerPort)], {
      timeout: 120_000,
    });
  } catch (err) {
    rmSync(dir, { recursive: true, force: true });
    dirs.delete(dir);
    const { code, stderr } = err as { code?: number; stderr?: string };
    const detail = stderr?.trim().replace(/^kafka: /, '') || (err as Error).message;
    // Exit 2: the jars are not cached; the script's message says to run `npm run brokers`.
    throw new Error(`own kafka: ${code === 2 ? '' : 'formatting its storage failed: '}${detail}`, {
      cause: err,
    });
  }

  let child: ChildProcess | undefined;
  let exited: Promise<void> = Promise.resolve();
  let destroyed: Promise<void> | undefined;

  const self: OwnKafka = {
    brokers,
    port,
    controllerPort,
    dir,
    get pid() {
      return alive(child) ? child?.pid : undefined;
    },
    async start() {
      if (destroyed) throw new Error('own kafka: start() after destroy()');
      if (alive(child)) return;
      const out = openSync(join(dir, 'kafka.out'), 'a');
      // broker.sh execs java: the child's pid is the broker's.
      const proc = spawn('bash', [BROKER_SH, 'run', dir, heap], { stdio: ['ignore', out, out] });
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
        // Until bash has exec'd java, wait-ready's --pid check (the cmdline names kafka.Kafka) would
        // take the broker for dead.
        await eventually(
          () => {
            if (!alive(proc)) throw new Error(`exited (${proc.exitCode ?? proc.signalCode})`);
            return readFileSync(`/proc/${proc.pid}/cmdline`, 'utf8').includes('kafka.Kafka');
          },
          { timeoutMs: 10_000, intervalMs: 10, what: 'broker.sh to exec java' },
        );
        await run(
          process.execPath,
          [
            WAIT_READY,
            '--brokers',
            brokers,
            '--timeout',
            String(readyTimeoutMs / 1000),
            '--pid',
            String(proc.pid),
            '--warm',
          ],
          { cwd: ROOT, timeout: readyTimeoutMs + 60_000 },
        );
      } catch (err) {
        await self.stop('SIGKILL');
        const { stderr } = err as { stderr?: string };
        throw new Error(
          `own kafka on ${brokers} did not start: ${stderr?.trim() || (err as Error).message}\n${logs()}`,
          { cause: err },
        );
      }
    },
    async stop(signal = 'SIGTERM') {
      const proc = child;
      if (!proc || !alive(proc)) return;
      const exitsWithin = async (ms: number) => {
        let timer: NodeJS.Timeout | undefined;
        const late = new Promise<false>((resolve) => (timer = setTimeout(() => resolve(false), ms)));
        try {
          return await Promise.race([exited.then(() => true), late]);
        } finally {
          clearTimeout(timer);
        }
      };
      proc.kill(signal);
      if (signal !== 'SIGKILL' && !(await exitsWithin(stopTimeoutMs))) proc.kill('SIGKILL');
      if (!(await exitsWithin(10_000)))
        throw new Error(`own kafka (pid ${proc.pid}) did not exit after SIGKILL`);
    },
    destroy: () =>
      (destroyed ??= (async () => {
        await self.stop('SIGKILL'); // its data is about to go: no need for a controlled shutdown
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
