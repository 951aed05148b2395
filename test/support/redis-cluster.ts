import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { Redis } from 'ioredis';
import { eventually } from './env.ts';
import { alive, onTestExit, tail } from './owned-process.ts';
import { freePort } from './redis-server.ts';

const run = promisify(execFile);

export interface ClusterNode {
  port: number;
  /** `127.0.0.1:<port>`. */
  address: string;
}

export interface OwnRedisCluster {
  /** Every node, masters first as `redis-cli --cluster create` paired them. */
  nodes: readonly ClusterNode[];
  /** `REDIS_CLUSTER_NODES`: every node's address, comma-separated. */
  seeds: string;
  /** The nodes that are masters now (a failover changes this), from `CLUSTER NODES`. */
  masters(): Promise<ClusterNode[]>;
  /** The master owning `key`'s slot now. */
  masterOf(key: string): Promise<ClusterNode>;
  /** SIGKILL the node on `port`: a crash, not a shutdown. */
  kill(port: number): Promise<void>;
  /** Starts a killed node again (same port and nodes.conf): it rejoins, a replica if it was failed over. */
  restart(port: number): Promise<void>;
  /** A plain connection to one node (close it yourself). */
  connect(port: number): Redis;
  stop(): Promise<void>;
}

export interface RedisClusterOptions {
  /** @defaultValue 3 */
  masters?: number;
  /** Replicas per master (a failover needs one). @defaultValue 0 */
  replicas?: number;
  /** `cluster-node-timeout`: how soon a dead master's replica takes over (ms). @defaultValue 1000 */
  nodeTimeoutMs?: number;
}

async function clusterPorts(count: number): Promise<{ port: number; busPort: number }[]> {
  const taken = new Set<number>();
  const one = async () => {
    for (;;) {
      const p = await freePort();
      if (!taken.has(p)) {
        taken.add(p);
        return p;
      }
    }
  };
  const ports = [];
  for (let i = 0; i < count; i++) ports.push({ port: await one(), busPort: await one() });
  return ports;
}

/**
 * A private Redis Cluster for tests: `masters` × (1 + `replicas`) redis-server processes on free
 * loopback ports (each with its own cluster bus port), joined with `redis-cli --cluster create`, in a
 * temp dir; nothing on disk (`--save ""`, no AOF: replicas are the copies under test). Ready when every
 * node says `cluster_state:ok` and every replica's link to its master is up.
 * @example const cluster = await ownRedisCluster({ replicas: 1 }); env.REDIS_CLUSTER_NODES = cluster.seeds;
 */
export async function ownRedisCluster(options: RedisClusterOptions = {}): Promise<OwnRedisCluster> {
  const masterCount = options.masters ?? 3;
  const total = masterCount * (1 + (options.replicas ?? 0));
  const dir = mkdtempSync(join(tmpdir(), 'conveyor-redis-cluster-'));
  const ports = await clusterPorts(total);
  const children = new Map<number, ChildProcess>();
  const unregister = onTestExit(() => {
    for (const child of children.values()) if (alive(child)) child.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  });
  const nodes = ports.map(({ port }) => ({ port, address: `127.0.0.1:${port}` }));
  const connect = (port: number) => {
    const r = new Redis(port, '127.0.0.1', {
      maxRetriesPerRequest: 0,
      retryStrategy: () => null,
      lazyConnect: true,
    });
    r.on('error', () => undefined);
    return r;
  };
  const ask = async <T>(port: number, fn: (r: Redis) => Promise<T>): Promise<T> => {
    const r = connect(port);
    try {
      await r.connect();
      return await fn(r);
    } finally {
      r.disconnect();
    }
  };
  const livePorts = () => nodes.filter((n) => alive(children.get(n.port))).map((n) => n.port);

  const busPorts = new Map(ports.map(({ port, busPort }) => [port, busPort]));
  const startNode = async (port: number) => {
    const busPort = busPorts.get(port)!;
    const log = join(dir, `${port}.log`);
    const child = spawn(
      'redis-server',
      [
        '--port',
        String(port),
        '--cluster-port',
        String(busPort),
        '--bind',
        '127.0.0.1',
        '--cluster-enabled',
        'yes',
        '--cluster-config-file',
        join(dir, `nodes-${port}.conf`),
        '--cluster-node-timeout',
        String(options.nodeTimeoutMs ?? 1_000),
        '--dir',
        dir,
        '--save',
        '',
        '--appendonly',
        'no',
        '--maxmemory-policy',
        'noeviction',
        '--logfile',
        log,
      ],
      { stdio: 'ignore' },
    );
    children.set(port, child);
    await eventually(() => ask(port, async (r) => (await r.ping()) === 'PONG').catch(() => false), {
      timeoutMs: 10_000,
      what: `redis-server on ${port}\n${tail(log, 20)}`,
    });
  };

  const self: OwnRedisCluster = {
    nodes,
    seeds: nodes.map((n) => n.address).join(','),
    async masters() {
      const [port] = livePorts();
      const text = await ask(port!, (r) => r.call('CLUSTER', 'NODES') as Promise<string>);
      return text
        .split('\n')
        .filter((line) => {
          const flags = (line.split(' ')[2] ?? '').split(',');
          return flags.includes('master') && !flags.includes('fail') && !flags.includes('fail?');
        })
        .map((line) => Number(line.split(' ')[1]!.split('@')[0]!.split(':')[1]))
        .map((port) => ({ port, address: `127.0.0.1:${port}` }));
    },
    async masterOf(key) {
      const [port] = livePorts();
      const slot = await ask(port!, (r) => r.call('CLUSTER', 'KEYSLOT', key) as Promise<number>);
      const slots = await ask(
        port!,
        (r) => r.call('CLUSTER', 'SLOTS') as Promise<[number, number, [string, number]][]>,
      );
      const range = slots.find(([from, to]) => slot >= from && slot <= to);
      if (!range) throw new Error(`no master for slot ${slot}`);
      const owner = range[2][1];
      return { port: owner, address: `127.0.0.1:${owner}` };
    },
    async kill(port) {
      const child = children.get(port);
      if (!child || !alive(child)) return;
      const exited = new Promise((r) => child.once('exit', r));
      child.kill('SIGKILL');
      await exited;
    },
    restart: (port) => startNode(port),
    connect,
    async stop() {
      for (const { port } of nodes) await self.kill(port);
      unregister();
      rmSync(dir, { recursive: true, force: true });
    },
  };

  try {
    for (const { port } of ports) await startNode(port);
    await run('redis-cli', [
      '--cluster',
      'create',
      ...nodes.map((n) => n.address),
      '--cluster-replicas',
      String(options.replicas ?? 0),
      '--cluster-yes',
    ]);
    await eventually(
      async () => {
        for (const { port } of nodes) {
          const info = await ask(port, (r) => r.call('CLUSTER', 'INFO') as Promise<string>);
          if (!info.includes('cluster_state:ok')) return false;
          const replication = await ask(port, (r) => r.info('replication'));
          if (replication.includes('role:slave') && !replication.includes('master_link_status:up'))
            return false;
          if (
            replication.includes('role:master') &&
            (options.replicas ?? 0) > 0 &&
            !/connected_slaves:[1-9]/.test(replication)
          )
            return false;
        }
        return true;
      },
      { timeoutMs: 20_000, what: 'the Redis Cluster to be ok with every replica in sync' },
    );
  } catch (err) {
    await self.stop();
    throw err;
  }
  return self;
}
