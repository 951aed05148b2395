import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import {
  closeSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { delimiter, dirname, join } from 'node:path';
import { promisify } from 'node:util';
import { connect } from 'amqplib';
import { eventually } from './env.ts';
import { alive, onTestExit, tail } from './owned-process.ts';
import { freePort } from './redis-server.ts';

const run = promisify(execFile);

/**
 * The real start script. Debian's `/usr/sbin/rabbitmq-server` is a wrapper that, run as root, `su`s to
 * the `rabbitmq` user (whose HOME, cookie and files are the machine node's) and `cd`s to
 * /var/lib/rabbitmq; the script it wraps runs the node as whoever calls it, with the environment given.
 * Elsewhere (the generic-unix tarball, Homebrew) the `rabbitmq-server` on PATH is that script.
 */
const SERVER_BIN = [
  '/usr/lib/rabbitmq/bin/rabbitmq-server',
  ...(process.env.PATH ?? '').split(delimiter).map((dir) => join(dir, 'rabbitmq-server')),
].find((path) => path.startsWith('/') && existsSync(path));

export interface OwnRabbitmq {
  /** `amqp://guest:guest@127.0.0.1:<port>`: the value for `RABBITMQ_URL`. */
  url: string;
  /** AMQP port. */
  port: number;
  /** Erlang distribution port (inter-node and CLI traffic). */
  distPort: number;
  /** `conveyor-test-<random>@localhost`: for `rabbitmqctl -n`. */
  nodeName: string;
  /** Its temp dir: `mnesia/` (data), `log/`, `rabbitmq.out`, the config files and its Erlang cookie. */
  dir: string;
  /** The pid of the start script (its process group holds the node) while it runs. */
  readonly pid: number | undefined;
  /** Starts the node (again: same ports, same data) and waits until it accepts AMQP connections. */
  start(): Promise<void>;
  /**
   * Stops it and waits until every process of the node is gone: SIGTERM = a clean shutdown (SIGKILL
   * if it has not exited after `stopTimeoutMs`), SIGKILL = a crash. No-op when it is not running.
   */
  stop(signal?: 'SIGTERM' | 'SIGKILL'): Promise<void>;
  /** Kills it if running and removes its dir. Idempotent. */
  destroy(): Promise<void>;
  /** `rabbitmqctl -n <nodeName> ...args` against this node (its cookie); resolves with stdout. */
  ctl(...args: string[]): Promise<string>;
}

export interface OwnRabbitmqOptions {
  /** @defaultValue 90000 */
  readyTimeoutMs?: number;
  /** How long a SIGTERM'd node gets before SIGKILL. @defaultValue 30000 */
  stopTimeoutMs?: number;
}

// Nodes (process groups) still running and dirs not yet removed when the test process exits.
const running = new Set<number>();
const dirs = new Set<string>();
const cleanupOnExit = (): void => {
  for (const pgid of running) {
    killMembers(pgid);
    // The script (its trap, or its death before the trap is set) reaps beam.smp and exits.
    try {
      process.kill(pgid, 'SIGTERM');
    } catch {
      // already gone
    }
  }
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
};

/**
 * The live (non-zombie) processes of process group `pgid`, from /proc: kill(-pgid, 0) would also
 * count zombies, and pid 1 here need not reap orphans promptly.
 */
function groupMembers(pgid: number): number[] {
  const pids: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    let stat: string;
    try {
      stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
    } catch {
      continue; // exited meanwhile
    }
    // pid (comm) state ppid pgrp ... — comm may contain spaces and parentheses.
    const [state, , pgrp] = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    if (Number(pgrp) === pgid && state !== 'Z' && state !== 'X') pids.push(Number(entry));
  }
  return pids;
}

/**
 * SIGKILLs the processes of group `pgid` other than its leader (the start script): beam.smp is the
 * script's child, so the script reaps it and exits (a SIGKILL of the whole group would leave beam.smp
 * to pid 1, a `<defunct>` until that reaps it). Returns how many were signalled.
 */
function killMembers(pgid: number, leaderToo = false): number {
  let n = 0;
  for (const pid of groupMembers(pgid)) {
    if (pid === pgid && !leaderToo) continue;
    try {
      process.kill(pid, 'SIGKILL');
      n++;
    } catch {
      // already gone
    }
  }
  return n;
}

/** The test process's environment without RABBITMQ_* and ERL_* settings that would steer the node. */
function baseEnv(): NodeJS.ProcessEnv {
  return Object.fromEntries(Object.entries(process.env).filter(([name]) => !/^(RABBITMQ_|ERL_)/.test(name)));
}

/**
 * A private RabbitMQ node for tests that stop, crash or restart RabbitMQ, run from the machine's
 * rabbitmq-server package as the current user: its own node name, AMQP and distribution ports
 * (127.0.0.1 only), data, logs, config and Erlang cookie in a temp dir; no plugins (the platform
 * does not use the management API); `guest` allowed from loopback (the default). Nothing of the
 * machine's node — /etc/rabbitmq, /var/lib/rabbitmq, port 5672 — is read or touched; only epmd
 * (4369) is shared, and started (it then stays) if none runs.
 *
 * On a busy 2-core machine (load 3-8): ready ~11-13 s after `ownRabbitmq()`, ~8-11 s after a
 * restart; a SIGTERM stop (a clean shutdown) takes ~1.3 s, a SIGKILL ~0.1 s.
 */
export async function ownRabbitmq(options: OwnRabbitmqOptions = {}): Promise<OwnRabbitmq> {
  onTestExit(cleanupOnExit);
  const { readyTimeoutMs = 90_000, stopTimeoutMs = 30_000 } = options;
  if (!SERVER_BIN) {
    throw new Error(
      'own rabbitmq: rabbitmq-server is not installed (neither /usr/lib/rabbitmq/bin/rabbitmq-server nor on PATH; Debian: apt-get install rabbitmq-server)',
    );
  }
  const ctlBin = join(dirname(SERVER_BIN), 'rabbitmqctl');
  const port = await freePort();
  let distPort = await freePort();
  while (distPort === port) distPort = await freePort();
  const nodeName = `conveyor-test-${randomBytes(4).toString('hex')}@localhost`;
  const url = `amqp://guest:guest@127.0.0.1:${port}`;
  const dir = mkdtempSync(join(tmpdir(), 'conveyor-rabbitmq-'));
  dirs.add(dir);
  mkdirSync(join(dir, 'mnesia'));
  mkdirSync(join(dir, 'log'));
  // Read by the node and rabbitmqctl through HOME=dir. Erlang refuses a cookie others can read.
  writeFileSync(join(dir, '.erlang.cookie'), randomBytes(16).toString('hex').toUpperCase(), { mode: 0o400 });
  // The machine's /etc/rabbitmq/rabbitmq.conf listens on 5672: the node must not read it.
  writeFileSync(
    join(dir, 'rabbitmq.conf'),
    [`listeners.tcp.local = 127.0.0.1:${port}`, 'loopback_users.guest = true', ''].join('\n'),
  );
  writeFileSync(join(dir, 'enabled_plugins'), '[].\n');
  // Replaces /etc/rabbitmq/rabbitmq-env.conf (the machine's NODENAME and ERL_FLAGS).
  writeFileSync(join(dir, 'rabbitmq-env.conf'), '');
  const ctlEnv: NodeJS.ProcessEnv = {
    ...baseEnv(),
    HOME: dir,
    RABBITMQ_CONF_ENV_FILE: join(dir, 'rabbitmq-env.conf'),
    ERL_EPMD_ADDRESS: '127.0.0.1',
  };
  const nodeEnv: NodeJS.ProcessEnv = {
    ...ctlEnv,
    RABBITMQ_NODENAME: nodeName,
    RABBITMQ_NODE_IP_ADDRESS: '127.0.0.1',
    RABBITMQ_NODE_PORT: String(port),
    RABBITMQ_DIST_PORT: String(distPort),
    RABBITMQ_CONFIG_FILE: join(dir, 'rabbitmq.conf'),
    RABBITMQ_ADVANCED_CONFIG_FILE: join(dir, 'advanced.config'), // absent: not /etc/rabbitmq's
    RABBITMQ_ENABLED_PLUGINS_FILE: join(dir, 'enabled_plugins'),
    RABBITMQ_MNESIA_BASE: join(dir, 'mnesia'),
    RABBITMQ_LOG_BASE: join(dir, 'log'),
    RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS: '-kernel inet_dist_use_interface {127,0,0,1}',
  };
  const out = join(dir, 'rabbitmq.out');
  const logs = () => tail(out, 40);

  const answers = async () => {
    const conn = await connect(url, { timeout: 3_000 });
    conn.on('error', () => undefined);
    await conn.close().catch(() => undefined);
    return true;
  };

  let child: ChildProcess | undefined;
  let exited: Promise<void> = Promise.resolve();
  let destroyed: Promise<void> | undefined;

  const self: OwnRabbitmq = {
    url,
    port,
    distPort,
    nodeName,
    dir,
    get pid() {
      return alive(child) ? child?.pid : undefined;
    },
    async start() {
      if (destroyed) throw new Error('own rabbitmq: start() after destroy()');
      if (alive(child)) return;
      const fd = openSync(out, 'a');
      // The script stays in front of beam.smp (it turns SIGTERM into a clean shutdown of the node): its
      // own process group, so a SIGKILL reaches both. beam.smp's helpers (erl_child_setup, in a session
      // of its own, and what it runs) exit when beam.smp does.
      const proc = spawn(SERVER_BIN, [], {
        cwd: dir,
        env: nodeEnv,
        detached: true,
        stdio: ['ignore', fd, fd],
      });
      closeSync(fd);
      child = proc;
      const pgid = proc.pid;
      if (pgid !== undefined) running.add(pgid);
      exited = new Promise((resolve) =>
        proc.once('exit', () => {
          // The node died with its script (or was stopped): nothing left for the exit handler.
          if (pgid !== undefined && groupMembers(pgid).length === 0) running.delete(pgid);
          resolve();
        }),
      );
      try {
        if (pgid === undefined) throw new Error(`spawning ${SERVER_BIN} failed`);
        const deadline = Date.now() + readyTimeoutMs;
        for (;;) {
          if (!alive(proc)) throw new Error(`it exited (${proc.exitCode ?? proc.signalCode})`);
          try {
            await answers();
            break;
          } catch (err) {
            if (Date.now() > deadline)
              throw new Error(`no AMQP connection within ${readyTimeoutMs} ms: ${(err as Error).message}`);
          }
          await new Promise((resolve) => setTimeout(resolve, 200));
        }
      } catch (err) {
        await self.stop('SIGKILL');
        throw new Error(
          `own rabbitmq ${nodeName} on ${url} did not start: ${(err as Error).message}\n${logs()}`,
          { cause: err },
        );
      }
    },
    async stop(signal = 'SIGTERM') {
      const proc = child;
      const pgid = proc?.pid;
      if (!proc || pgid === undefined || !running.has(pgid)) return;
      const exitsWithin = async (ms: number) => {
        let timer: NodeJS.Timeout | undefined;
        const late = new Promise<false>((resolve) => (timer = setTimeout(() => resolve(false), ms)));
        try {
          return await Promise.race([exited.then(() => true), late]);
        } finally {
          clearTimeout(timer);
        }
      };
      // SIGTERM to the script only: it passes it on to the node and waits for the node to stop.
      if (signal === 'SIGTERM' && alive(proc)) proc.kill('SIGTERM');
      if (signal === 'SIGKILL' || !(await exitsWithin(stopTimeoutMs))) {
        killMembers(pgid);
        if (!(await exitsWithin(5_000))) killMembers(pgid, true);
      }
      await exitsWithin(10_000);
      // Whatever of the group is left (nothing, normally; at most a helper spawned meanwhile).
      await eventually(() => killMembers(pgid, true) === 0 && groupMembers(pgid).length === 0, {
        timeoutMs: 10_000,
        intervalMs: 50,
        what: `the processes of own rabbitmq (group ${pgid}) to exit after SIGKILL`,
      });
      running.delete(pgid);
    },
    async ctl(...args) {
      const { stdout } = await run(ctlBin, ['-n', nodeName, ...args], {
        cwd: dir,
        env: ctlEnv,
        timeout: 60_000,
      });
      return stdout;
    },
    destroy: () =>
      (destroyed ??= (async () => {
        await self.stop('SIGKILL'); // its data is about to go: no need for a clean shutdown
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
