import { rabbitmqSettings } from '../shared/bus/create-bus.ts';
import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Kafka, logLevel } from 'kafkajs';
import { loadConfig, type Config } from '../shared/config/config.ts';
import { deleteRabbitmqTopology } from '../shared/bus/rabbitmq/admin.ts';
import { rabbitmqTopology } from '../shared/bus/rabbitmq/bus.ts';
import { deleteSqsTopology } from '../shared/bus/sqs/admin.ts';
import { cleanup } from '../test/support/platform.ts';
import { isolatedEnv } from '../test/support/env.ts';
import { freePort } from '../test/support/redis-server.ts';
import { PROJECTOR_CONSUMER } from '../workers/projections/projector.ts';
import type { BenchBus } from './cli.ts';
import type { ProcessMonitor } from './monitor.ts';
import { MODULES } from '../modules/registry.ts';

const ROOT = fileURLToPath(new URL('../', import.meta.url));
const KEEP_LINES = 200;

/** One platform process started by the bench (`api/main.ts` or `workers/main.ts`). */
export interface BenchProcess {
  label: string;
  child: ChildProcess;
  /** The last lines it wrote (stdout and stderr), for the report when it fails. */
  tail: string[];
  exited: Promise<number | null>;
  running(): boolean;
}

export interface StackOptions {
  /** Names this stack's CPU profile directories: `<cpuProfDir>/<name>.<process label>/`. */
  name: string;
  bus: BenchBus;
  logLevel: string;
  monitor: ProcessMonitor;
  /** Directory for `node --cpu-prof` output; undefined = no profiling. */
  cpuProfDir: string | undefined;
  /** Extra environment for every process of this stack. */
  env?: Record<string, string>;
}

/**
 * A Conveyor deployment of real processes on an isolated Postgres schema, BullMQ prefix, Kafka topic
 * and RabbitMQ exchange. API replicas and worker processes are added on demand; `close()` stops them
 * (SIGTERM, then SIGKILL after a deadline) and deletes everything the stack created.
 */
export interface Stack {
  readonly env: Readonly<Record<string, string>>;
  readonly config: Config;
  readonly apiUrls: readonly string[];
  readonly processes: readonly BenchProcess[];
  startApi(count: number): Promise<void>;
  startWorkers(count: number): Promise<void>;
  /** Throws with the process's last lines if any process of the stack has exited. */
  assertAlive(): void;
  close(): Promise<void>;
}

function spawnPlatform(
  label: string,
  entry: string,
  env: Record<string, string>,
  profile?: { dir: string; name: string },
): BenchProcess {
  // A directory per process: node writes one profile per thread (tsx's loader runs in its own), the
  // main thread's is the one named `CPU.<date>.<time>.<pid>.0.<seq>.cpuprofile`.
  const profFlags = profile
    ? ['--cpu-prof', '--cpu-prof-dir', join(profile.dir, `${profile.name}.${label}`)]
    : [];
  // node --import tsx, as test/support/processes.ts: one process, so signals reach the platform itself.
  const child = spawn(process.execPath, [...profFlags, '--import', 'tsx', entry], {
    cwd: ROOT,
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const tail: string[] = [];
  const onData = (chunk: Buffer) => {
    tail.push(...chunk.toString('utf8').split('\n').filter(Boolean));
    if (tail.length > KEEP_LINES) tail.splice(0, tail.length - KEEP_LINES);
  };
  child.stdout?.on('data', onData);
  child.stderr?.on('data', onData);
  return {
    label,
    child,
    tail,
    exited: new Promise((resolve) => child.once('exit', (code) => resolve(code))),
    running: () => child.exitCode === null && child.signalCode === null,
  };
}

/** Polls `/readyz` until 200; fails at once when the process exits (a start-up error), or at the deadline. */
async function waitReady(proc: BenchProcess, url: string, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (!proc.running()) throw new Error(`${proc.label} exited:\n${proc.tail.slice(-15).join('\n')}`);
    const ok = await fetch(url).then(
      (r) => r.status === 200,
      () => false,
    );
    if (ok) return;
    if (Date.now() > deadline)
      throw new Error(`${proc.label} not ready after ${timeoutMs} ms:\n${proc.tail.slice(-15).join('\n')}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

async function stop(proc: BenchProcess, deadlineMs: number): Promise<void> {
  if (!proc.running()) return;
  proc.child.kill('SIGTERM');
  let timer: NodeJS.Timeout | undefined;
  const timedOut = await Promise.race([
    proc.exited.then(() => false),
    new Promise<boolean>((r) => (timer = setTimeout(() => r(true), deadlineMs))),
  ]);
  clearTimeout(timer);
  if (timedOut && proc.running()) {
    proc.child.kill('SIGKILL');
    await proc.exited;
  }
}

/** Deletes the Kafka topics (events, retry, dlq) and consumer groups of an isolated stack. */
async function cleanupKafka(config: Config): Promise<void> {
  const { kafka } = config.bus;
  const admin = new Kafka({
    clientId: 'conveyor-bench',
    brokers: kafka.brokers,
    logLevel: logLevel.NOTHING,
  }).admin();
  try {
    await admin.connect();
    const topics = (await admin.listTopics()).filter((t) => t.startsWith(kafka.topic));
    if (topics.length > 0) await admin.deleteTopics({ topics }).catch(() => undefined);
    const { groups } = await admin.listGroups();
    const ours = groups.map((g) => g.groupId).filter((g) => g.startsWith(kafka.consumer.groupId));
    if (ours.length > 0) await admin.deleteGroups(ours).catch(() => undefined);
  } finally {
    await admin.disconnect().catch(() => undefined);
  }
}

async function cleanupRabbitmq(config: Config): Promise<void> {
  const topology = rabbitmqTopology(rabbitmqSettings(config));
  await deleteRabbitmqTopology(config.bus.rabbitmq.url, topology, [PROJECTOR_CONSUMER]);
}

/** Deletes the SQS queues (projections and its DLQ) of an isolated stack; its group registry goes with the Redis keys. */
async function cleanupSqs(config: Config): Promise<void> {
  const { sqs } = config.bus;
  await deleteSqsTopology({ endpoint: sqs.endpoint, region: sqs.region }, sqs, [PROJECTOR_CONSUMER]);
}

/** @example const stack = createStack({ name: 'bullmq', bus: 'bullmq', logLevel: 'warn', monitor, cpuProfDir: undefined }); */
export function createStack(options: StackOptions): Stack {
  const env = isolatedEnv({
    EVENT_BUS: options.bus,
    LOG_LEVEL: options.logLevel,
    // The dev key (`Authorization: Bearer dev`) with API_KEYS empty and NODE_ENV=test; no rate limit in the way.
    API_KEYS: '',
    RATE_LIMIT_MAX: '1000000000',
    RATE_LIMIT_READ_MAX: '1000000000',
    SHUTDOWN_GRACE_MS: '10000',
    METRICS_PORT: '0',
    ...options.env,
  });
  // Its own SQS queues, named after its own QUEUE_PREFIX (the machine's ElasticMQ is shared).
  env.SQS_QUEUE_PREFIX ??= `bench-${env.QUEUE_PREFIX!}`;
  const config = loadConfig(env, { modules: MODULES });
  const processes: BenchProcess[] = [];
  const apiUrls: string[] = [];
  let apiCount = 0;
  let workerCount = 0;
  const profile = options.cpuProfDir ? { dir: options.cpuProfDir, name: options.name } : undefined;

  const assertAlive = () => {
    const dead = processes.find((p) => !p.running());
    if (dead) {
      throw new Error(
        `${dead.label} exited (code ${dead.child.exitCode}):\n${dead.tail.slice(-15).join('\n')}`,
      );
    }
  };

  let closing: Promise<void> | undefined;
  return {
    env,
    config,
    apiUrls,
    processes,
    assertAlive,
    async startApi(count) {
      const started = await Promise.all(
        Array.from({ length: count }, async () => {
          const port = await freePort();
          const label = `api-${++apiCount}`;
          const proc = spawnPlatform(label, 'api/main.ts', { ...env, PORT: String(port) }, profile);
          processes.push(proc);
          const url = `http://127.0.0.1:${port}`;
          await waitReady(proc, `${url}/readyz`, 60_000);
          options.monitor.watch(label, proc.child.pid!);
          return url;
        }),
      );
      apiUrls.push(...started);
    },
    async startWorkers(count) {
      for (let i = 0; i < count; i++) {
        const label = `workers-${++workerCount}`;
        const proc = spawnPlatform(label, 'workers/main.ts', env, profile);
        processes.push(proc);
        options.monitor.watch(label, proc.child.pid!);
      }
      // Readiness of the whole pipeline (bus included) is proven by the caller's warm-up orders.
    },
    close: () =>
      (closing ??= (async () => {
        // Workers first (they finish in-flight jobs), then the APIs; reverse start order within each.
        const workers = processes.filter((p) => p.label.startsWith('workers')).toReversed();
        const apis = processes.filter((p) => p.label.startsWith('api')).toReversed();
        await Promise.all(workers.map((p) => stop(p, 20_000)));
        await Promise.all(apis.map((p) => stop(p, 10_000)));
        if (options.bus === 'kafka') await cleanupKafka(config).catch(() => undefined);
        if (options.bus === 'rabbitmq') await cleanupRabbitmq(config).catch(() => undefined);
        if (options.bus === 'sqs') await cleanupSqs(config).catch(() => undefined);
        await cleanup(config);
      })()),
  };
}
