import { execFile, execFileSync } from 'node:child_process';
import { chownSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import pg from 'pg';
import { eventually } from './env.ts';
import { freePort } from './redis-server.ts';

const run = promisify(execFile);

export interface OwnPostgres {
  port: number;
  /** Its data directory (owned by `postgres` when the tests run as root). */
  dataDir: string;
  /** A connection URL for `database` on this cluster (trust auth, user postgres). */
  url(database?: string): string;
  /** Creates `database` (before processes start, so they do not race to create it). */
  createDatabase(database: string): Promise<void>;
  /** Starts the cluster (again) and waits until it accepts connections. */
  start(): Promise<void>;
  /** Stops it: `fast` = a clean shutdown (clients disconnected), `immediate` = a crash. */
  stop(mode?: 'fast' | 'immediate'): Promise<void>;
  /** Stops it if running and removes its data directory. Idempotent. */
  destroy(): Promise<void>;
}

/** The binaries of the newest PostgreSQL under /usr/lib/postgresql (or `PG_BIN`). */
function binDir(): string {
  const override = process.env.PG_BIN;
  if (override) return override;
  const root = '/usr/lib/postgresql';
  const versions = existsSync(root)
    ? readdirSync(root)
        .filter((v) => existsSync(join(root, v, 'bin', 'initdb')))
        .sort((a, b) => Number(b) - Number(a))
    : [];
  if (!versions[0]) throw new Error('no PostgreSQL binaries under /usr/lib/postgresql (set PG_BIN)');
  return join(root, versions[0], 'bin');
}

export interface OwnPostgresOptions {
  /**
   * Make it a streaming standby of the cluster on this port (same machine) instead of a fresh
   * `initdb`: `pg_basebackup -R -X stream` from it (initdb's pg_hba trusts local replication).
   */
  standbyOf?: number;
}

/**
 * A private PostgreSQL cluster for tests that stop or crash Postgres: `initdb` in a temp dir, its own
 * port and socket dir, trust auth. The machine's cluster on 5432 is never touched. PostgreSQL refuses
 * to run as root, so under root the binaries run as the `postgres` user (runuser).
 */
export async function ownPostgres(opts: OwnPostgresOptions = {}): Promise<OwnPostgres> {
  const bin = binDir();
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), 'conveyor-pg-'));
  const data = join(dir, 'data');
  const logFile = join(dir, 'postgres.log');
  const asRoot = process.getuid?.() === 0;
  if (asRoot) {
    const uid = Number(execFileSync('id', ['-u', 'postgres']).toString().trim());
    const gid = Number(execFileSync('id', ['-g', 'postgres']).toString().trim());
    chownSync(dir, uid, gid);
  }
  const pgRun = (tool: string, args: readonly string[]) =>
    asRoot
      ? run('runuser', ['-u', 'postgres', '--', join(bin, tool), ...args], { cwd: dir })
      : run(join(bin, tool), [...args], { cwd: dir });
  const url = (database = 'postgres') => `postgres://postgres@127.0.0.1:${port}/${database}`;
  const accepts = async () => {
    const client = new pg.Client({ connectionString: url(), connectionTimeoutMillis: 1_000 });
    client.on('error', () => undefined);
    try {
      await client.connect();
      await client.query('SELECT 1');
      return true;
    } catch {
      return false;
    } finally {
      await client.end().catch(() => undefined);
    }
  };

  // --no-sync and fsync=off: a test cluster need not survive an OS crash, only a process stop.
  if (opts.standbyOf === undefined) {
    await pgRun('initdb', [
      '-D',
      data,
      '-A',
      'trust',
      '-U',
      'postgres',
      '-E',
      'UTF8',
      '--locale=C',
      '--no-sync',
    ]);
  } else {
    // A fast checkpoint, not a spread one: the copy starts at once.
    await pgRun('pg_basebackup', [
      ...['-h', '127.0.0.1', '-p', String(opts.standbyOf), '-U', 'postgres', '-D', data],
      ...['-R', '-X', 'stream', '-c', 'fast', '--no-sync'],
    ]);
  }
  const options = [
    `-p ${port}`,
    `-k ${dir}`,
    '-c listen_addresses=127.0.0.1',
    '-c fsync=off',
    '-c full_page_writes=off',
    '-c max_connections=200',
  ].join(' ');

  let running = false;
  let destroyed: Promise<void> | undefined;
  const self: OwnPostgres = {
    port,
    dataDir: data,
    url,
    async createDatabase(database) {
      const client = new pg.Client({ connectionString: url(), connectionTimeoutMillis: 5_000 });
      await client.connect();
      try {
        await client.query(`CREATE DATABASE "${database.replaceAll('"', '""')}"`);
      } finally {
        await client.end();
      }
    },
    async start() {
      try {
        await pgRun('pg_ctl', ['-D', data, '-l', logFile, '-o', options, '-w', '-t', '60', 'start']);
      } catch (err) {
        const log = existsSync(logFile)
          ? readFileSync(logFile, 'utf8').split('\n').slice(-20).join('\n')
          : '';
        throw new Error(`own postgres on ${port} did not start:\n${log}`, { cause: err });
      }
      running = true;
      await eventually(accepts, { timeoutMs: 30_000, what: `postgres on ${port}` });
    },
    async stop(mode = 'fast') {
      if (!running) return;
      await pgRun('pg_ctl', ['-D', data, '-m', mode, '-w', '-t', '60', 'stop']);
      running = false;
    },
    destroy: () =>
      (destroyed ??= (async () => {
        await self.stop('immediate').catch(() => undefined);
        rmSync(dir, { recursive: true, force: true });
      })()),
  };
  await self.start();
  return self;
}
