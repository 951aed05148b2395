import os from 'node:os';
import { Redis } from 'ioredis';
import pg from 'pg';
import { TEST_DATABASE_URL, TEST_REDIS_URL } from '../test/support/env.ts';

/** The machine a result was measured on: without it, numbers cannot be compared. */
export interface Machine {
  nproc: number;
  cpuModel: string;
  memoryGb: number;
  kernel: string;
  node: string;
  redis: string;
  postgres: string;
  /** Durability settings that decide what a commit costs (per-transaction baselines pay it per job). */
  postgresDurability: string;
  /** Redis persistence: AOF and RDB snapshots. */
  redisPersistence: string;
  /** 1-minute load average when the run started: other work on the box skews every number. */
  loadAverageAtStart: number;
}

export async function describeMachine(): Promise<Machine> {
  const redis = new Redis(TEST_REDIS_URL, { maxRetriesPerRequest: 1, lazyConnect: true });
  let redisVersion = 'unknown';
  let redisPersistence = 'unknown';
  try {
    await redis.connect();
    redisVersion = /redis_version:(\S+)/.exec(await redis.info('server'))?.[1] ?? 'unknown';
    const [, aof] = (await redis.config('GET', 'appendonly')) as string[];
    const [, save] = (await redis.config('GET', 'save')) as string[];
    redisPersistence = `appendonly=${aof ?? '?'}, save="${save ?? '?'}"`;
  } finally {
    redis.disconnect();
  }
  const client = new pg.Client({ connectionString: TEST_DATABASE_URL });
  let postgres = 'unknown';
  let postgresDurability = 'unknown';
  try {
    await client.connect();
    postgres =
      (await client.query<{ server_version: string }>('SHOW server_version')).rows[0]?.server_version ??
      'unknown';
    const { rows } = await client.query<{ name: string; setting: string }>(
      `SELECT name, setting FROM pg_settings WHERE name IN ('fsync', 'synchronous_commit', 'shared_buffers') ORDER BY name`,
    );
    postgresDurability = rows.map((r) => `${r.name}=${r.setting}`).join(', ');
  } finally {
    await client.end();
  }
  return {
    nproc: os.availableParallelism(),
    cpuModel: os.cpus()[0]?.model.trim() ?? 'unknown',
    memoryGb: Math.round((os.totalmem() / 1024 ** 3) * 10) / 10,
    kernel: `${os.type()} ${os.release()}`,
    node: process.version,
    redis: redisVersion,
    postgres,
    postgresDurability,
    redisPersistence,
    loadAverageAtStart: Math.round(os.loadavg()[0]! * 100) / 100,
  };
}
