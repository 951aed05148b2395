import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { freePort } from '../../test/support/redis-server.ts';

/**
 * A redis-server of the fairness bench's own, set up like the machine's (no AOF, no snapshots,
 * `noeviction`): its INFO commandstats and CPU then count this stack's commands only, whatever other
 * work shares the machine's Redis — the per-order command cost is read from them.
 */
export interface PrivateRedis {
  url: string;
  pid: number;
  stop(): Promise<void>;
}

/** Redis counters read from INFO: command calls by name (commands run inside Lua scripts included) and CPU seconds. */
export interface RedisCounters {
  calls: Map<string, number>;
  cpuS: number;
}

/** Commands and Redis CPU per order between two {@link RedisCounters}. */
export interface RedisCost {
  /** Every command Redis ran, per order (a script counts once as EVALSHA plus every call it made); INFO excluded. */
  commandsPerOrder: number;
  /** Script invocations (EVALSHA/EVAL/FCALL) per order. */
  scriptsPerOrder: number;
  /** Redis CPU (user + sys), ms per order. */
  cpuMsPerOrder: number;
  /** The largest commands by calls per order. */
  top: { command: string; perOrder: number }[];
}

/** Starts a private redis-server on a free port; resolves once it answers PING. */
export async function startPrivateRedis(): Promise<PrivateRedis> {
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), 'conveyor-fair-redis-'));
  const child: ChildProcess = spawn(
    'redis-server',
    [
      '--port',
      String(port),
      '--bind',
      '127.0.0.1',
      '--dir',
      dir,
      '--save',
      '',
      '--appendonly',
      'no',
      '--maxmemory-policy',
      'noeviction',
    ],
    { stdio: 'ignore' },
  );
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  const url = `redis://127.0.0.1:${port}`;
  const deadline = Date.now() + 10_000;
  for (;;) {
    const r = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
    r.on('error', () => undefined);
    const ok = await r
      .connect()
      .then(() => r.ping())
      .then(
        (p) => p === 'PONG',
        () => false,
      );
    r.disconnect();
    if (ok) break;
    if (child.exitCode !== null || Date.now() > deadline) {
      child.kill('SIGKILL');
      rmSync(dir, { recursive: true, force: true });
      throw new Error(`private redis-server on port ${port} did not start`);
    }
    await new Promise((r2) => setTimeout(r2, 50));
  }
  return {
    url,
    pid: child.pid!,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGTERM');
        const timer = setTimeout(() => child.kill('SIGKILL'), 5_000);
        await exited;
        clearTimeout(timer);
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Reads the command counters and CPU of `redis` (INFO commandstats, INFO cpu). */
export async function redisCounters(redis: Redis): Promise<RedisCounters> {
  const [commandstats, cpu] = await Promise.all([redis.info('commandstats'), redis.info('cpu')]);
  const calls = new Map<string, number>();
  for (const m of commandstats.matchAll(/^cmdstat_([^:]+):calls=(\d+)/gm)) calls.set(m[1]!, Number(m[2]));
  const num = (name: string) => Number(new RegExp(`^${name}:([\\d.]+)`, 'm').exec(cpu)?.[1] ?? 0);
  return { calls, cpuS: num('used_cpu_sys') + num('used_cpu_user') };
}

const round3 = (n: number) => Math.round(n * 1000) / 1000;

/** What Redis did per order between `before` and `after` (INFO itself not counted). */
export function redisCost(before: RedisCounters, after: RedisCounters, orders: number): RedisCost {
  const n = Math.max(1, orders);
  const deltas = [...after.calls]
    .map(([command, calls]) => ({ command, calls: calls - (before.calls.get(command) ?? 0) }))
    .filter((d) => d.command !== 'info' && d.calls > 0);
  const total = deltas.reduce((s, d) => s + d.calls, 0);
  const scripts = deltas
    .filter((d) => ['evalsha', 'eval', 'evalsha_ro', 'eval_ro', 'fcall'].includes(d.command))
    .reduce((s, d) => s + d.calls, 0);
  return {
    commandsPerOrder: round3(total / n),
    scriptsPerOrder: round3(scripts / n),
    cpuMsPerOrder: round3(((after.cpuS - before.cpuS) * 1000) / n),
    top: deltas
      .sort((a, b) => b.calls - a.calls)
      .slice(0, 12)
      .map((d) => ({ command: d.command, perOrder: round3(d.calls / n) })),
  };
}
