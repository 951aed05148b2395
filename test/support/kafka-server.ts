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
  /** Clients must authenticate with SASL/PLAIN as this user (the listener is SASL_PLAINTEXT). */
  saslPlain?: { username: string; password: string };
}

// Brokers still running and dirs not yet removed when the test process exits (a failed or aborted run).
const running = new Set<ChildProcess>();
const dirs = new Set<string>();
const cleanupOnExit = (): void => {
  for (const child of running) child.kill('SIGKILL');
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
};

/** The end of a node's broker log and stdout, for an error message. */
export const kafkaLogs = (dir: string): string =>
  tail(join(dir, 'logs', 'server.log'), 30) + tail(join(dir, 'kafka.out'), 20);

/** A temp dir removed when the test process exits unless {@link releaseKafkaDir} removed it first. */
export function kafkaTempDir(label: string): string {
  onTestExit(cleanupOnExit);
  const dir = mkdtempSync(join(tmpdir(), `conveyor-${label}-`));
  dirs.add(dir);
  return dir;
}

export function releaseKafkaDir(dir: string): void {
  rmSync(dir, { recursive: true, force: true });
  dirs.delete(dir);
}

/** Two distinct spare ports: a node's broker and controller listeners. */
export async function kafkaPorts(taken: readonly number[] = []): Promise<[number, number]> {
  const pick = async (avoid: readonly number[]) => {
    let port = await freePort();
    while (avoid.includes(port)) port = await freePort();
    return port;
  };
  const port = await pick(taken);
  return [port, await pick([...taken, port])];
}

/**
 * Writes a node's config into `dir` and formats its storage (`broker.sh prepare`). `cluster`: its node
 * id and the quorum (`1@127.0.0.1:<controller port>,…`); absent, a single node.
 */
export async function prepareKafkaNode(
  dir: string,
  port: number,
  controllerPort: number,
  cluster?: { nodeId: number; voters: string },
  saslPlain?: { username: string; password: string },
): Promise<void> {
  const extra = cluster ? [String(cluster.nodeId), cluster.voters] : [];
  const { KAFKA_SASL_USERS: _inherited, ...env } = process.env;
  if (saslPlain) env.KAFKA_SASL_USERS = `${saslPlain.username}:${saslPlain.password}`;
  try {
    await run('bash', [BROKER_SH, 'prepare', dir, String(port), String(controllerPort), ...extra], {
      timeout: 120_000,
      env,
    });
  } catch (err) {
    const { code, stderr } = err as { code?: number; stderr?: string };
    const detail = stderr?.trim().replace(/^kafka: /, '') || (err as Error).message;
    // Exit 2: the jars are not cached; the script's message says to run `npm run brokers`.
    throw new Error(`own kafka: ${code === 2 ? '' : 'formatting its storage failed: '}${detail}`, {
      cause: err,
    });
  }
}

/** One broker JVM of a prepared dir: spawned, killed, restarted on the same data. */
export interface KafkaNodeProcess {
  readonly pid: number | undefined;
  /** Spawns the broker (no-op while it runs); resolves once java runs, not once it is ready. */
  spawn(): Promise<number>;
  /** See {@link OwnKafka.stop}. */
  stop(signal?: 'SIGTERM' | 'SIGKILL'): Promise<void>;
}

export function kafkaNodeProcess(dir: string, heap: string, stopTimeoutMs: number): KafkaNodeProcess {
  onTestExit(cleanupOnExit);
  let child: ChildProcess | undefined;
  let exited: Promise<void> = Promise.resolve();
  const self: KafkaNodeProcess = {
    get pid() {
      return alive(child) ? child?.pid : undefined;
    },
    async spawn() {
      if (alive(child) && child?.pid !== undefined) return child.pid;
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
      const pid = proc.pid;
      if (pid === undefined) throw new Error('spawning bash failed');
      // Until bash has exec'd java, wait-ready's --pid check (the cmdline names kafka.Kafka) would
      // take the broker for dead.
      await eventually(
        () => {
          if (!alive(proc)) throw new Error(`exited (${proc.exitCode ?? proc.signalCode})`);
          return readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes('kafka.Kafka');
        },
        { timeoutMs: 10_000, intervalMs: 10, what: 'broker.sh to exec java' },
      );
      return pid;
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
  };
  return self;
}

/**
 * Waits until `brokers` answer metadata requests (and, with `nodes`, that many brokers are registered),
 * then warms the group coordinator and the producer-id block. Fails at once when one of `pids` exits.
 */
export async function waitKafkaReady(options: {
  brokers: string;
  pids: readonly number[];
  nodes?: number;
  timeoutMs: number;
  saslPlain?: { username: string; password: string } | undefined;
}): Promise<void> {
  const { brokers, pids, nodes = 1, timeoutMs, saslPlain } = options;
  const args = ['--brokers', brokers, '--timeout', String(timeoutMs / 1000), '--nodes', String(nodes)];
  if (saslPlain) args.push('--sasl-plain', `${saslPlain.username}:${saslPlain.password}`);
  await run(process.execPath, [WAIT_READY, ...args, '--pid', pids.join(','), '--warm'], {
    cwd: ROOT,
    timeout: timeoutMs + 60_000,
  });
}

/**
 * A private single-node KRaft Kafka broker for tests that stop, crash or restart Kafka: spare ports
 * (broker and controller), a temp data dir, a small heap, the jars `npm run brokers` cached in
 * `.cache/kafka/libs`. The machine's broker on 9092 — or whatever answers there — is never touched.
 * A three-node cluster: `ownKafkaCluster` (kafka-cluster.ts).
 *
 * On a busy 2-core machine: ready ~6-9 s after `ownKafka()` (formatting its storage, once, is ~2.5 s of
 * that), ~5-7 s after a restart; a SIGTERM stop takes <1 s.
 */
export async function ownKafka(options: OwnKafkaOptions = {}): Promise<OwnKafka> {
  const { heap = '384m', readyTimeoutMs = 90_000, stopTimeoutMs = 30_000, saslPlain } = options;
  const [port, controllerPort] = await kafkaPorts();
  const brokers = `127.0.0.1:${port}`;
  const dir = kafkaTempDir('kafka');
  try {
    await prepareKafkaNode(dir, port, controllerPort, undefined, saslPlain);
  } catch (err) {
    releaseKafkaDir(dir);
    throw err;
  }
  const node = kafkaNodeProcess(dir, heap, stopTimeoutMs);
  let destroyed: Promise<void> | undefined;

  const self: OwnKafka = {
    brokers,
    port,
    controllerPort,
    dir,
    get pid() {
      return node.pid;
    },
    async start() {
      if (destroyed) throw new Error('own kafka: start() after destroy()');
      if (node.pid !== undefined) return;
      try {
        const pid = await node.spawn();
        await waitKafkaReady({ brokers, pids: [pid], timeoutMs: readyTimeoutMs, saslPlain });
      } catch (err) {
        await node.stop('SIGKILL');
        const { stderr } = err as { stderr?: string };
        throw new Error(
          `own kafka on ${brokers} did not start: ${stderr?.trim() || (err as Error).message}\n${kafkaLogs(dir)}`,
          { cause: err },
        );
      }
    },
    stop: (signal) => node.stop(signal),
    destroy: () =>
      (destroyed ??= (async () => {
        await node.stop('SIGKILL'); // its data is about to go: no need for a controlled shutdown
        releaseKafkaDir(dir);
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
