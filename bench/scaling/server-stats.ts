import type { Redis } from 'ioredis';
import type { Pool } from '../../shared/db/pool.ts';

/** What Redis and PostgreSQL did per order during a window, and what PostgreSQL backends waited on. */
export interface ServerStats {
  perOrder: {
    redisCommands: number;
    /** Redis CPU (user + sys), ms. */
    redisCpuMs: number;
    pgTransactions: number;
    pgRowsWritten: number;
    pgWalBytes: number;
    /** WAL flushes (fsyncs): commits that could not share a flush. */
    pgWalSyncs: number;
  };
  /** Redis commands per order by name, the ten largest. */
  topRedisCommands: { command: string; perOrder: number }[];
  /**
   * PostgreSQL backends of the platform sampled every 50 ms: the share of samples in each state
   * (`CPU` = running, else `<wait_event_type>:<wait_event>`), largest first. A lock or LWLock near the
   * top is a shared bottleneck.
   */
  pgWaits: { state: string; share: number }[];
  /** The statements (first words) seen waiting on a lock, by share of those samples. */
  pgLockWaiters: { statement: string; share: number }[];
  pgBackendsActive: number;
}

interface Snapshot {
  redisCalls: Map<string, number>;
  redisCpuS: number;
  pg: { xacts: number; rows: number; walBytes: number; walSyncs: number };
}

async function snapshot(redis: Redis, pool: Pool): Promise<Snapshot> {
  const [commandstats, cpu] = await Promise.all([redis.info('commandstats'), redis.info('cpu')]);
  const redisCalls = new Map<string, number>();
  for (const m of commandstats.matchAll(/^cmdstat_([^:]+):calls=(\d+)/gm))
    redisCalls.set(m[1]!, Number(m[2]));
  const num = (name: string) => Number(new RegExp(`^${name}:([\\d.]+)`, 'm').exec(cpu)?.[1] ?? 0);
  const { rows } = await pool.query<{ xacts: string; rows: string; wal_bytes: string; wal_sync: string }>(
    `SELECT d.xact_commit + d.xact_rollback AS xacts, d.tup_inserted + d.tup_updated + d.tup_deleted AS rows,
            w.wal_bytes, w.wal_sync
       FROM pg_stat_database d, pg_stat_wal w WHERE d.datname = current_database()`,
  );
  const r = rows[0]!;
  return {
    redisCalls,
    redisCpuS: num('used_cpu_sys') + num('used_cpu_user'),
    pg: {
      xacts: Number(r.xacts),
      rows: Number(r.rows),
      walBytes: Number(r.wal_bytes),
      walSyncs: Number(r.wal_sync),
    },
  };
}

/**
 * Samples Redis and PostgreSQL counters around a measured window (`start`, then `stop(orders)`).
 * pg_stat_database counts the whole database, so run it while nothing else uses that database.
 */
export function sampleServerStats(redis: Redis, pool: Pool) {
  let first: Snapshot | undefined;
  const waits = new Map<string, number>();
  const lockWaiters = new Map<string, number>();
  let samples = 0;
  let activeSum = 0;
  let timer: NodeJS.Timeout | undefined;
  let sampling: Promise<unknown> = Promise.resolve();
  const sampleWaits = async () => {
    const { rows } = await pool.query<{ state: string; statement: string; n: number }>(
      `SELECT coalesce(wait_event_type || ':' || wait_event, 'CPU') AS state,
              left(regexp_replace(query, '\\s+', ' ', 'g'), 48) AS statement, count(*)::int AS n
         FROM pg_stat_activity
        WHERE application_name LIKE 'conveyor-%' AND state = 'active' AND pid <> pg_backend_pid()
        GROUP BY 1, 2`,
    );
    samples += 1;
    for (const r of rows) {
      waits.set(r.state, (waits.get(r.state) ?? 0) + r.n);
      activeSum += r.n;
      if (r.state.startsWith('Lock:'))
        lockWaiters.set(r.statement, (lockWaiters.get(r.statement) ?? 0) + r.n);
    }
  };
  return {
    async start() {
      first = await snapshot(redis, pool);
      timer = setInterval(() => {
        sampling = sampleWaits().catch(() => undefined);
      }, 50);
    },
    async stop(orders: number): Promise<ServerStats> {
      clearInterval(timer);
      await sampling;
      const last = await snapshot(redis, pool);
      const a = first!;
      const per = (n: number) => Math.round((n / orders) * 1000) / 1000;
      const calls = [...last.redisCalls].map(([command, n]) => ({
        command,
        perOrder: per(n - (a.redisCalls.get(command) ?? 0)),
      }));
      const totalWaits = [...waits.values()].reduce((s, n) => s + n, 0) || 1;
      return {
        perOrder: {
          // The stats calls themselves (INFO) are not the platform's.
          redisCommands: per(
            calls.filter((c) => c.command !== 'info').reduce((s, c) => s + c.perOrder * orders, 0),
          ),
          redisCpuMs: per((last.redisCpuS - a.redisCpuS) * 1000),
          pgTransactions: per(last.pg.xacts - a.pg.xacts),
          pgRowsWritten: per(last.pg.rows - a.pg.rows),
          pgWalBytes: per(last.pg.walBytes - a.pg.walBytes),
          pgWalSyncs: per(last.pg.walSyncs - a.pg.walSyncs),
        },
        topRedisCommands: calls
          .filter((c) => c.command !== 'info' && c.perOrder > 0)
          .sort((x, y) => y.perOrder - x.perOrder)
          .slice(0, 10),
        pgWaits: [...waits]
          .map(([state, n]) => ({ state, share: Math.round((n / totalWaits) * 1000) / 1000 }))
          .sort((x, y) => y.share - x.share)
          .slice(0, 8),
        pgLockWaiters: (() => {
          const total = [...lockWaiters.values()].reduce((s, n) => s + n, 0) || 1;
          return [...lockWaiters]
            .map(([statement, n]) => ({ statement, share: Math.round((n / total) * 1000) / 1000 }))
            .sort((x, y) => y.share - x.share)
            .slice(0, 5);
        })(),
        pgBackendsActive: Math.round((activeSum / Math.max(samples, 1)) * 100) / 100,
      };
    },
  };
}
